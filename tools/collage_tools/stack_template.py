"""template.yaml as the local stack reads it: what its resources are, with their values resolved
as CloudFormation would resolve them here: `!Ref` of a parameter is its default, `!Ref` and
`!GetAtt` of a resource name the local resource (from `names`, filled as they are created).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FUNCTION = "AWS::Serverless::Function"
DEFAULT_RUNTIME = "python3.13"  # the stack's runtime, when the template's Globals name none


class LocalTemplate:
    def __init__(self, root: Path, names: dict[str, str]) -> None:
        from samcli.yamlhelper import yaml_parse

        self.root = root
        self.names = names  # logical id (or "Id.Attribute") -> physical name / ARN / URL
        self.data: dict[str, Any] = yaml_parse((root / "template.yaml").read_text())

    def properties(self, logical: str) -> dict[str, Any]:
        return dict(self.data["Resources"][logical]["Properties"])

    def resolve(self, value: Any) -> Any:
        """Template values: parameter defaults and the local resources' names for `!Ref`."""
        if isinstance(value, dict) and "Ref" in value:
            return self._ref(value["Ref"])
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target, attribute = value["Fn::GetAtt"]
            return self.names[f"{target}.{attribute}"]
        return value

    def _ref(self, ref: str) -> Any:
        if ref in self.names:
            return self.names[ref]
        parameter = self.data.get("Parameters", {}).get(ref)
        if parameter is not None:
            return str(parameter.get("Default", ""))
        raise KeyError(f"template reference {ref!r} has no local value")

    def resolve_all(self, value: Any) -> Any:
        """`resolve` through nested lists and mappings (an event pattern, say)."""
        value = self.resolve(value)
        if isinstance(value, dict):
            return {key: self.resolve_all(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve_all(item) for item in value]
        return value

    def resolved_env(self, env: dict[str, Any]) -> dict[str, str]:
        """A function's environment variables with their values resolved, as text."""
        return {key: str(self.resolve(value)) for key, value in env.items()}

    @property
    def function_globals(self) -> dict[str, Any]:
        return dict(self.data.get("Globals", {}).get("Function", {}))

    @property
    def runtime(self) -> str:
        return str(self.function_globals.get("Runtime", DEFAULT_RUNTIME))

    def functions(self) -> dict[str, dict[str, Any]]:
        """Each function's settings by logical id: handler, timeout (s) and memory (MB) with
        the Globals' defaults, and its environment variables (the Globals' and its own, as
        written: resolve them with `resolved_env`)."""
        globals_ = self.function_globals
        shared_env = globals_.get("Environment", {}).get("Variables", {})
        settings = {}
        for logical, resource in self.data["Resources"].items():
            if resource["Type"] != FUNCTION:
                continue
            props = resource["Properties"]
            timeout = props.get("Timeout", globals_.get("Timeout", 60))
            memory = props.get("MemorySize", globals_.get("MemorySize", 512))
            settings[logical] = {
                "logical": logical,
                "handler": props["Handler"],
                "timeout": float(self.resolve(timeout)),
                "memory": int(self.resolve(memory)),
                "env": {**shared_env, **props.get("Environment", {}).get("Variables", {})},
            }
        return settings

    def state_machine_definition(self, map_execution_type: str) -> str:
        """The ASL with the template's DefinitionSubstitutions made (the map's children run
        as `map_execution_type`)."""
        props = self.properties("CollageStateMachine")
        definition = (self.root / props["DefinitionUri"]).read_text()
        substitutions = {
            key: self.resolve(value) for key, value in props["DefinitionSubstitutions"].items()
        }
        substitutions["MapExecutionType"] = map_execution_type
        for key, value in substitutions.items():
            definition = definition.replace("${" + key + "}", str(value))
        return definition

    def outputs(self) -> dict[str, str]:
        """The template's Outputs that name a resource, with this stack's values."""
        outputs = {}
        for key, output in self.data.get("Outputs", {}).items():
            try:  # outputs of resources the local stack has not (the alarm topic, the console)
                value = self.resolve(output["Value"])
            except KeyError:
                continue
            if isinstance(value, str):
                outputs[key] = value
        return outputs
