// Runs statemachine/migration.asl.json locally with aws-local-stepfunctions. Every Lambda task
// is sent to `cargo lambda watch`, which runs ferry's real step binaries; the waitForTaskToken
// tasks (the Fargate tail, the operator's cutover) are answered by stand-ins that record the
// call. Prints one JSON line: {status, output | error, cause, calls}.
//
// usage: node run.mjs INPUT_JSON_FILE LAMBDA_URL

// aws-local-stepfunctions needs Node 22's Promise.withResolvers; this is Node 20.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
  };
}
const { StateMachine } = await import('aws-local-stepfunctions');
import { readFileSync } from 'node:fs';

const [inputFile, lambdaUrl] = process.argv.slice(2);
const input = JSON.parse(readFileSync(inputFile, 'utf8'));
const functions = {
  InventoryFunctionArn: 'ferry-inventory', BackupFunctionArn: 'ferry-backup',
  BackupStatusFunctionArn: 'ferry-backup-status', EnableNotificationsFunctionArn: 'ferry-enable-notifications',
  NotificationsStatusFunctionArn: 'ferry-notifications-status', PlanFunctionArn: 'ferry-plan',
  CopyShardFunctionArn: 'ferry-copy-shard', PlanVerifyFunctionArn: 'ferry-plan-verify',
  VerifyShardFunctionArn: 'ferry-verify-shard', CleanupFunctionArn: 'ferry-cleanup',
};
// What SAM's DefinitionSubstitutions would fill in.
const substitutions = {
  ...Object.fromEntries(Object.entries(functions).map(([k, v]) => [k, `arn:aws:lambda:us-east-1:123456789012:function:${v}`])),
  ControlQueueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/ferry-control',
  TailClusterArn: 'arn:aws:ecs:us-east-1:123456789012:cluster/ferry',
  TailTaskDefinitionArn: 'arn:aws:ecs:us-east-1:123456789012:task-definition/ferry-tail:1',
  SubnetIds: 'subnet-1,subnet-2', SecurityGroupIds: 'sg-1',
  CutoverTopicArn: 'arn:aws:sns:us-east-1:123456789012:ferry-cutover',
};
let text = readFileSync(new URL('../../statemachine/migration.asl.json', import.meta.url), 'utf8');
text = text.replace(/\$\{(\w+)\}/g, (_, name) => {
  if (!(name in substitutions)) throw new Error(`unknown placeholder ${name}`);
  return substitutions[name];
});
const definition = JSON.parse(text);

const calls = {};
const count = (state) => { calls[state] = (calls[state] ?? 0) + 1; };
const byArn = Object.fromEntries(Object.entries(functions).map(([k, v]) => [substitutions[k], v]));

async function invoke(state, params) {
  count(state);
  const name = byArn[params.FunctionName];
  const response = await fetch(`${lambdaUrl}/2015-03-31/functions/${name}/invocations`, {
    method: 'POST', body: JSON.stringify(params.Payload),
  });
  const body = await response.json();
  if (body && body.errorType) {
    // lambda:invoke reports a function error under the function's own error type.
    const error = new Error(body.errorMessage);
    error.name = body.errorType;
    throw error;
  }
  return { Payload: body, StatusCode: 200 };
}

const handlers = {};
const waits = {};
const retries = {};
function visit(states) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task' && state.Resource === 'arn:aws:states:::lambda:invoke') {
      handlers[name] = (params) => invoke(name, params);
      retries[name] = 700;
    } else if (state.Type === 'Task') {
      // A waitForTaskToken task: the tail or the operator answers with SendTaskSuccess.
      handlers[name] = (params) => { count(name); return { answered: name }; };
    } else if (state.Type === 'Wait') {
      waits[name] = 10;
    } else if (state.Type === 'Map') {
      visit((state.ItemProcessor ?? state.Iterator).States);
    }
  }
}
visit(definition.States);

const machine = new StateMachine(definition, { validationOptions: { checkArn: false } });
const execution = machine.run(input, {
  overrides: { taskResourceLocalHandlers: handlers, waitTimeOverrides: waits, retryIntervalOverrides: retries },
  // The runner has no task tokens of its own: the stand-ins answer instead of SendTaskSuccess.
  context: {
    Execution: { Id: 'arn:aws:states:us-east-1:123456789012:execution:ferry:local', Input: input, StartTime: new Date().toISOString() },
    Task: { Token: 'local-task-token' },
  },
});
try {
  const output = await execution.result;
  console.log(JSON.stringify({ status: 'SUCCEEDED', output, calls }));
} catch (e) {
  const cause = e.cause ?? {};
  console.log(JSON.stringify({ status: 'FAILED', error: cause.name ?? e.name, cause: cause.message ?? e.message, calls }));
}
