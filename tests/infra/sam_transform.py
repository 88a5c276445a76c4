"""Prints template.yaml as CloudFormation sees it after the SAM transform (offline, with
samtranslator, which cfn-lint brings): local code and the ASL file are replaced the way
`sam package` would replace them."""
import json
import sys

from cfnlint.decode.cfn_yaml import load
from samtranslator.translator.transform import transform


class ManagedPolicies:
    """The one AWS managed policy the template names; no IAM call needed."""

    def load(self):
        return {
            "AWSLambdaVPCAccessExecutionRole":
            "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
        }


template = load(sys.argv[1])
for resource in template["Resources"].values():
    props = resource.get("Properties", {})
    if resource["Type"] == "AWS::Serverless::Function":
        props["CodeUri"] = "s3://bucket/code.zip"
    if resource["Type"] == "AWS::Serverless::StateMachine":
        with open(props.pop("DefinitionUri")) as f:
            props["Definition"] = json.load(f)
print(json.dumps(transform(template, {}, ManagedPolicies()), default=str))
