"""The template's resources created in moto for the local stack, named as `sam deploy` would
name them for a stack called STACK, and recorded in the template's `names` (logical id ->
physical name / ARN / URL) as they are made.

Each function takes the client it calls, so a stack whose clients act as the template's roles
(tests/support/iam.py) creates through those.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from typing import Any

from collage_tools.aws_shapes import ACCOUNT, REGION
from collage_tools.stack_template import LocalTemplate

STACK = "collage-local"
# The buckets and queues of template.yaml that the local stack creates, by logical id.
BUCKETS = {"InputBucket": "input", "OutputBucket": "output", "TempBucket": "temp"}
QUEUES = ("ProcessingQueue", "ProcessingDeadLetterQueue")
MACHINE = f"{STACK}-collage-workflow"


def create_buckets(s3: Any, template: LocalTemplate) -> None:
    for logical, short in BUCKETS.items():
        name = f"{STACK}-{short}"
        s3.create_bucket(Bucket=name)
        template.names[logical] = name
    s3.put_bucket_notification_configuration(  # EventBridgeEnabled, as in the template
        Bucket=template.names["InputBucket"],
        NotificationConfiguration={"EventBridgeConfiguration": {}},
    )


def create_queues(sqs: Any, template: LocalTemplate) -> None:
    """The processing queue and its dead-letter queue, with the template's redrive count."""
    dlq = sqs.create_queue(QueueName=f"{STACK}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    queue_props = template.properties("ProcessingQueue")
    redrive = {
        "deadLetterTargetArn": dlq_arn["QueueArn"],
        "maxReceiveCount": str(queue_props["RedrivePolicy"]["maxReceiveCount"]),
    }
    queue = sqs.create_queue(
        QueueName=f"{STACK}-queue",
        Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": "0"},
    )["QueueUrl"]
    template.names.update({"ProcessingQueue": queue, "ProcessingDeadLetterQueue": dlq})


def name_state_machine(template: LocalTemplate) -> None:
    """The state machine's ARN, known before it exists (the functions' variables name it)."""
    template.names["CollageStateMachine"] = (
        f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{MACHINE}"
    )


def create_functions(iam: Any, lambda_: Any, template: LocalTemplate) -> dict[str, dict[str, Any]]:
    """The functions in moto's Lambda (placeholders: the local runtime runs the handlers);
    returns each one's settings (`LocalTemplate.functions`) by function name."""
    role = iam.create_role(
        RoleName="collage-local-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("placeholder.py", "# handlers run in-process\n")
    functions = {}
    for logical, settings in template.functions().items():
        name = f"{STACK}-{logical}"
        response = lambda_.create_function(
            FunctionName=name,
            Runtime=template.runtime,
            Role=role,
            Handler=settings["handler"],
            Code={"ZipFile": archive.getvalue()},
        )
        template.names[logical] = name
        template.names[f"{logical}.Arn"] = response["FunctionArn"]
        functions[name] = settings
    return functions


def create_state_machine(sfn: Any, template: LocalTemplate) -> None:
    sfn.create_state_machine(
        name=MACHINE,
        # bridge 2: moto rejects EXPRESS children
        definition=template.state_machine_definition(map_execution_type="STANDARD"),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/collage-local-states",
        type="STANDARD",
    )


def create_upload_rule(events: Any, template: LocalTemplate) -> None:
    """The EventBridge rule SAM makes of StartFromS3Function's CsvUploaded event."""
    event = template.properties("StartFromS3Function")["Events"]
    pattern = template.resolve_all(event["CsvUploaded"]["Properties"]["Pattern"])
    rule = f"{STACK}-CsvUploaded"
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")
    target = template.names["StartFromS3Function.Arn"]
    events.put_targets(Rule=rule, Targets=[{"Id": "StartFromS3", "Arn": target}])


def register_stack(cloudformation: Any, outputs: dict[str, str]) -> None:
    """A CloudFormation stack named STACK whose outputs are the template's, with the local
    values, so `describe-stacks` finds this stack's resources as it finds a deployed one's."""
    template = {
        "Resources": {"LocalStack": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    with warnings.catch_warnings():  # moto names the placeholder resource it skips
        warnings.simplefilter("ignore", UserWarning)
        cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(template))
