"""The local stack with moto's IAM enforcement on: every handler runs under its own role.

What AWS would check and moto does not by default: whether the role of the function (or of the
state machine) may make the call. Here:

- The roles come from the template as CloudFormation sees it: samtranslator turns template.yaml
  into CloudFormation (SAM policy templates such as StepFunctionsExecutionPolicy expanded), and
  each function role's inline policies, with `Fn::Sub` / `Ref` / `Fn::GetAtt` resolved to the
  local stack's names, become the inline policies of a moto IAM role.
- Each handler is wired (`store_for`) with a Store whose clients carry credentials from
  `sts:AssumeRole` on its function's role; the harness's own calls use an administrator.
- The state machine's own calls (Lambda invoke, the Distributed Map's ItemReader and
  ResultWriter, aws-sdk tasks) use the state machine role's credentials.
- moto's IAM enforcement (`settings.INITIAL_NO_AUTH_ACTION_COUNT = 0`) is switched on after the
  resources exist; the test harness itself calls as an administrator user.

Where moto's evaluation is weaker than AWS's (a denial here is one AWS would give too; a pass
does not prove what moto does not evaluate):
- Conditions in identity policies are not evaluated by moto (an `s3:prefix` condition allows
  any prefix), except in the check below of a read of a missing key.
- Bucket and queue resource policies are not evaluated; only the caller's identity policies.
- AWS managed policies (AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess, the SQS execution
  role) are not attached: they cover logs, X-Ray and the SQS poller, none called locally.
- moto gives Lambda and Step Functions requests no resource ARN; `_determine_resource` below
  adds it from the request, so resource-scoped grants (StartExecution on one state machine,
  InvokeFunction on one function) are checked as on AWS.
- moto checks a CopyObject as s3:PutObject on the destination only; the check below adds
  s3:GetObject on the copy source, as AWS does.
- A read of a missing key (GetObject, HeadObject, a copy's source) answers 403 AccessDenied,
  not 404, when the caller may not s3:ListBucket the bucket, as S3 does (moto always answers
  404). Whether a ListBucket grant with an `s3:prefix` condition counts is not documented (the
  read has no prefix): `list_prefix_condition="key"` evaluates the condition with the key as
  the prefix (the grant counts for keys under it), `"absent"` treats the key as missing from
  the request (the grant never counts). docs/deploy.md's checklist asks which one AWS does.
- Distributed Map children run inside moto, not through StartExecution: the state machine's
  StartExecution-on-itself grant is not exercised here.
"""

from __future__ import annotations

import contextvars
import json
import re
import threading
from contextlib import ExitStack
from typing import Any, Literal
from urllib.parse import unquote

from collage_tools.emulator import ACCOUNT, REGION, STACK, LocalStack, verbatim_copy_source
from scripts.permissions_table import translated_resources

PARTITION = "aws"
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# Who is calling: a function's logical id, or None for the test harness (the administrator).
_caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("iam_caller", default=None)
STATE_MACHINE = "CollageStateMachine"
STACK_UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
STACK_ID = f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/{STACK_UUID}"
# moto names some actions after the API operation; IAM names them differently.
IAM_ACTIONS = {"lambda:Invoke": "lambda:InvokeFunction"}


def role_policies(resources: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Inline policy documents (unresolved) by the logical id of the function or state machine."""
    by_principal = {}
    for logical, resource in resources.items():
        if resource["Type"] not in ("AWS::Lambda::Function", "AWS::StepFunctions::StateMachine"):
            continue
        role_ref = resource["Properties"].get("Role") or resource["Properties"].get("RoleArn")
        role = resources[role_ref["Fn::GetAtt"][0]]["Properties"]
        by_principal[logical] = [p["PolicyDocument"] for p in role.get("Policies", [])]
    return by_principal


# Fn::Join, Fn::Select and Fn::Split: (first argument, the second resolved) -> value.
_LISTS = {
    "Fn::Join": lambda separator, values: separator.join(str(v) for v in values),
    "Fn::Select": lambda index, values: values[int(index)],
    "Fn::Split": lambda separator, text: text.split(separator),
}


class Resolver:
    """Resolves the intrinsic functions of a policy to the local stack's values."""

    def __init__(self, stack: LocalStack, resources: dict[str, Any]) -> None:
        self.stack = stack
        self.resources = resources
        self.pseudo = {
            "AWS::Partition": PARTITION,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK,
            "AWS::StackId": STACK_ID,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def ref(self, name: str) -> str:
        """A bucket's or function's name, a queue's URL, the state machine's ARN."""
        if name in self.pseudo:
            return self.pseudo[name]
        return self.stack.names[name]

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.resources[name]["Type"]
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:{PARTITION}:s3:::{self.stack.names[name]}"
        if kind == "AWS::SQS::Queue":
            queue_name = self.stack.names[name].rsplit("/", 1)[-1]
            if attribute == "Arn":
                return f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{queue_name}"
            if attribute == "QueueName":
                return queue_name
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            return self.stack.names[f"{name}.Arn"]
        if kind == "AWS::StepFunctions::StateMachine":
            arn = self.stack.names[STATE_MACHINE]
            return {"Arn": arn, "Name": arn.rsplit(":", 1)[-1]}[attribute]
        raise KeyError(f"no local value for {name}.{attribute}")

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        import re

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return self(variables[name])
            if "." in name and name not in self.pseudo:
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", value, text)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                return self.get_att(*argument)
            if key == "Fn::Sub":
                if isinstance(argument, str):
                    return self.sub(argument, {})
                return self.sub(argument[0], argument[1])
            if key in _LISTS:
                return _LISTS[key](argument[0], self(argument[1]))
        return {k: self(v) for k, v in value.items()}


def _iam_pattern(pattern: str) -> re.Pattern[str]:
    """An IAM wildcard (`*` any run of characters, `?` one) as a regular expression."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
        re.DOTALL,
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _prefix_condition_met(condition: dict[str, Any], key: str | None) -> bool:
    """StringLike / StringEquals on s3:prefix, `key` as the prefix (None: not in the request)."""
    for operator, tests in condition.items():
        for name, values in tests.items():
            if name != "s3:prefix" or operator not in ("StringLike", "StringEquals") or key is None:
                return False  # anything else is not modelled: count the grant as absent
            if operator == "StringEquals" and key not in _as_list(values):
                return False
            if operator == "StringLike" and not any(
                _iam_pattern(v).fullmatch(key) for v in _as_list(values)
            ):
                return False
    return True


def may_list(documents: list[dict[str, Any]], bucket: str, key: str, prefix_condition: str) -> bool:
    """Whether these identity policies allow s3:ListBucket on the bucket for a read of `key`."""
    arn = f"arn:{PARTITION}:s3:::{bucket}"
    for statement in (s for d in documents for s in d["Statement"]):
        actions = _as_list(statement.get("Action", []))
        resources = _as_list(statement.get("Resource", []))
        if statement.get("Effect") != "Allow":
            continue
        if not any(_iam_pattern(a.lower()).fullmatch("s3:listbucket") for a in actions):
            continue
        if not any(_iam_pattern(r).fullmatch(arn) for r in resources):
            continue
        known = key if prefix_condition == "key" else None
        if _prefix_condition_met(statement.get("Condition", {}), known):
            return True
    return False


def _object_exists(bucket: str, key: str) -> bool:
    from moto.s3.models import s3_backends

    found = s3_backends[ACCOUNT][PARTITION].buckets.get(bucket)
    return found is not None and found.keys.get(key) is not None


class _Determined:
    """Resource ARNs for Lambda and Step Functions requests (moto checks those against "*")."""

    @staticmethod
    def lambda_resource(response: Any) -> str:
        parts = response.path.split("/")
        if "functions" not in parts or parts.index("functions") + 1 >= len(parts):
            return "*"
        name = unquote(parts[parts.index("functions") + 1])
        if name.startswith("arn:"):
            return name
        return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}"

    @staticmethod
    def states_resource(response: Any) -> str:
        try:
            body = json.loads(response.body or "{}")
        except ValueError:
            return "*"
        return body.get("stateMachineArn") or body.get("executionArn") or "*"


def _inherit_caller_in_threads(stack: ExitStack) -> None:
    """Threads started by a handler (its pools) run as the handler's caller."""
    init, bootstrap = threading.Thread.__init__, threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def patched_init(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._iam_caller = _caller.get()  # type: ignore[attr-defined]

    def patched_bootstrap(self: threading.Thread) -> None:
        _caller.set(getattr(self, "_iam_caller", None))
        bootstrap(self)

    threading.Thread.__init__ = patched_init  # type: ignore[method-assign]
    threading.Thread._bootstrap_inner = patched_bootstrap  # type: ignore[attr-defined]

    def restore() -> None:
        threading.Thread.__init__ = init  # type: ignore[method-assign]
        threading.Thread._bootstrap_inner = bootstrap  # type: ignore[attr-defined]

    stack.callback(restore)


class EnforcedStack(LocalStack):
    """LocalStack whose handlers and state machine call AWS as their template roles."""

    def __init__(
        self,
        *,
        without: dict[str, set[str]] | None = None,
        list_prefix_condition: Literal["key", "absent"] = "key",
        **kwargs: Any,
    ) -> None:
        """`without`: statement Sids to leave out, by logical id (to show a missing grant fails).
        `list_prefix_condition`: how a ListBucket grant's s3:prefix condition counts when S3
        decides between 403 and 404 for a missing key (see the module's docstring)."""
        # The harness's identities live in this process's clients: handlers run in its threads.
        kwargs.setdefault("lambda_isolation", "inline")
        super().__init__(**kwargs)
        self.without = without or {}
        self.list_prefix_condition = list_prefix_condition
        self.credentials: dict[str | None, dict[str, str]] = {}
        self.denied: list[tuple[str, str, str]] = []  # (caller ARN, action, resource) refused
        self.policies: dict[str, list[dict[str, Any]]] = {}
        self._patches = ExitStack()

    def __enter__(self) -> EnforcedStack:
        super().__enter__()
        try:
            self._set_up_identities()
            self._enable()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._patches.close()
        super().__exit__(*exc)

    # ------------------------------------------------------------------ identities
    def _set_up_identities(self) -> None:
        import boto3

        iam = boto3.client("iam", region_name=REGION)
        sts = boto3.client("sts", region_name=REGION)
        resources = translated_resources(self.root)
        resolve = Resolver(self, resources)
        for logical, documents in role_policies(resources).items():
            role_name = f"{STACK}-{logical}-role"[:64]
            service = "states" if logical == STATE_MACHINE else "lambda"
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": f"{service}.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
            arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))[
                "Role"
            ]["Arn"]
            resolved = [resolve(document) for document in documents]
            for document in resolved:
                document["Statement"] = [
                    statement
                    for statement in document["Statement"]
                    if statement.get("Sid") not in self.without.get(logical, set())
                ]
            self.policies[logical] = resolved
            for n, document in enumerate(resolved):
                document.setdefault("Version", "2012-10-17")
                iam.put_role_policy(
                    RoleName=role_name, PolicyName=f"policy{n}", PolicyDocument=json.dumps(document)
                )
            assumed = sts.assume_role(RoleArn=arn, RoleSessionName=logical)["Credentials"]
            self.credentials[logical] = {
                "aws_access_key_id": assumed["AccessKeyId"],
                "aws_secret_access_key": assumed["SecretAccessKey"],
                "aws_session_token": assumed["SessionToken"],
            }
        iam.create_user(UserName="harness")
        iam.put_user_policy(
            UserName="harness", PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY)
        )
        key = iam.create_access_key(UserName="harness")["AccessKey"]
        self.credentials[None] = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }

    def _client(self, caller: str | None, service: str) -> Any:
        import boto3
        from botocore.config import Config

        from collage.aws import TOTAL_ATTEMPTS

        config = Config(retries={"total_max_attempts": TOTAL_ATTEMPTS, "mode": "adaptive"})
        return boto3.client(service, region_name=REGION, config=config, **self.credentials[caller])

    def _enable(self) -> None:
        from moto import settings
        from moto.awslambda.responses import LambdaResponse
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.stepfunctions.responses import StepFunctionResponse

        from collage.aws import Store

        patches = self._patches
        _inherit_caller_in_threads(patches)
        # The harness calls as the administrator from here on.
        self.store = Store(s3=self._client(None, "s3"), sfn=self._client(None, "stepfunctions"))

        # The state machine's own calls: its role.
        self._patch_state_machine_clients(patches)

        for cls, determine in (
            (LambdaResponse, _Determined.lambda_resource),
            (StepFunctionResponse, _Determined.states_resource),
        ):
            cls._determine_resource = determine  # type: ignore[attr-defined]
            patches.callback(delattr, cls, "_determine_resource")

        saved = (settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count)
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0

        def disable() -> None:
            settings.INITIAL_NO_AUTH_ACTION_COUNT = saved[0]
            ActionAuthenticatorMixin.request_count = saved[1]

        patches.callback(disable)

        from moto.iam.access_control import IAMRequestBase

        check = IAMRequestBase.check_action_permitted
        denied = self.denied
        hides_missing = self._hides_missing_key

        def checked(request: Any, action: str, resource: str) -> None:
            request._action = action
            try:
                check(request, resource)
                if action == "s3:GetObject" and hides_missing(request._access_key.arn, resource):
                    request._raise_access_denied()
            except Exception:
                denied.append((request._access_key.arn, action, resource))
                raise

        def check_action_permitted(request: Any, resource: str) -> None:
            checked(request, IAM_ACTIONS.get(request._action, request._action), resource)
            # A copy also reads its source, which AWS checks as s3:GetObject (moto does not).
            source = {k.lower(): v for k, v in request._headers.items()}.get("x-amz-copy-source")
            if source and request._action == "s3:PutObject":
                source = unquote(source.split("?versionId=")[0].lstrip("/"))
                checked(request, "s3:GetObject", f"arn:{PARTITION}:s3:::{source}")

        IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign]
        patches.callback(setattr, IAMRequestBase, "check_action_permitted", check)

    def _hides_missing_key(self, caller_arn: str, resource: str) -> bool:
        """True when S3 would answer 403 for this read: the key is missing and the caller may
        not list the bucket. The harness (an IAM user, the administrator) may list anything."""
        if ":assumed-role/" not in caller_arn:
            return False
        logical = caller_arn.rsplit("/", 1)[-1]  # the session name is the logical id
        bucket, _, key = resource.removeprefix(f"arn:{PARTITION}:s3:::").partition("/")
        if _object_exists(bucket, key):
            return False
        documents = self.policies.get(logical, [])
        return not may_list(documents, bucket, key, self.list_prefix_condition)

    def _patch_state_machine_clients(self, patches: ExitStack) -> None:
        import importlib

        import boto3
        from botocore.config import Config

        credentials = self.credentials[STATE_MACHINE]

        def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
            config = Config(
                parameter_validation=False, retries={"max_attempts": 0, "total_max_attempts": 1}
            )
            client = boto3.client(service, region_name=region, config=config, **credentials)
            return verbatim_copy_source(client)

        base = "moto.stepfunctions.parser.asl.component.state.exec."
        for module_name in (
            "state_map.result_writer.resource_eval.resource_eval_s3",
            "state_map.item_reader.eval.resource_eval_s3",
            "state_task.lambda_eval_utils",
            "state_task.service.state_task_service_aws_sdk",
            "state_task.service.state_task_service_sfn",
        ):
            module = importlib.import_module(base + module_name)
            patches.callback(setattr, module, "boto_client_for", module.boto_client_for)
            module.boto_client_for = boto_client_for  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ handler calls
    def store_for(self, logical: str) -> Any:
        from collage.aws import Store

        return Store(s3=self._client(logical, "s3"), sfn=self._client(logical, "stepfunctions"))

    def client(self, service: str) -> Any:
        caller = _caller.get()
        if caller not in self.credentials:  # setting the stack up, before identities exist
            return super().client(service)
        return self._client(caller, service)

    def call_function(
        self, name: str, event: Any, response_headers: dict[str, Any] | None = None
    ) -> Any:
        logical = self.functions[name]["logical"]
        token = _caller.set(logical)
        try:
            return super().call_function(name, event, response_headers)
        finally:
            _caller.reset(token)
