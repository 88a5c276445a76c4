// Runs statemachine/migration.asl.json locally with aws-local-stepfunctions. Every Lambda task
// is sent to `cargo lambda watch`, which runs ferry's real step binaries; the waitForTaskToken
// tasks (the Fargate tail, the operator's cutover) are answered by stand-ins that record the
// call. Prints one JSON line: {status, output | error, cause, calls, largest_state_bytes,
// largest_child_state_bytes}.
//
// Where aws-local-stepfunctions accepts what AWS refuses, or lacks what AWS has, this harness
// does what AWS documents:
// - Payload limits: a state's input or output, a Lambda's request or response over 256 KiB is
//   States.DataLimitExceeded, which ends the execution where no Catch sees it
//   (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html#service-limits-task-executions).
// - Distributed Map with ItemReader/ResultWriter: items are read from S3 (moto) when the Map
//   starts and never enter the state; the children's results are written to S3 and the Map's
//   result is the ResultWriter's {MapRunArn, ResultWriterDetails}
//   (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html,
//   https://docs.aws.amazon.com/step-functions/latest/dg/input-output-resultwriter.html).
// - A failed child fails a Distributed Map with States.ExceedToleratedFailureThreshold (the
//   default tolerance is zero), not with the child's error, which stays on the child
//   (https://docs.aws.amazon.com/step-functions/latest/dg/maprun-fail-threshold.html). With
//   --sfn-port, the harness answers ListMapRuns, ListExecutions and DescribeExecution for its
//   Map Runs the way Step Functions does, so a step can look the child's error up.
//
// usage: node run.mjs INPUT_JSON_FILE LAMBDA_URL [--aws URL] [--sfn-port PORT] [--stubs FILE]
//                    [--map-items N]
//   --aws        moto's URL: the S3 the plan bucket lives in
//   --sfn-port   serve the Map Run APIs on 127.0.0.1:PORT while the execution runs
//   --stubs      {FunctionName: payload | {"echo_shard": extra}} answered instead of the Lambda
//   --map-items  each Distributed Map reads all its items but runs only the first N children
//                (every child is alike; the parent's state never holds the items)
// The output's `maps` says, per Distributed Map, how many items it read and how many it ran.

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
import { createServer } from 'node:http';

const args = process.argv.slice(2);
const [inputFile, lambdaUrl] = args;
const option = (name) => { const i = args.indexOf(name); return i < 0 ? undefined : args[i + 1]; };
const awsUrl = option('--aws');
const sfnPort = option('--sfn-port');
const stubs = option('--stubs') ? JSON.parse(readFileSync(option('--stubs'), 'utf8')) : {};
const mapItems = option('--map-items') ? Number(option('--map-items')) : Infinity;
const maps = {};
const input = JSON.parse(readFileSync(inputFile, 'utf8'));
const functions = {
  InventoryFunctionArn: 'ferry-inventory', BackupFunctionArn: 'ferry-backup',
  BackupStatusFunctionArn: 'ferry-backup-status', EnableNotificationsFunctionArn: 'ferry-enable-notifications',
  NotificationsStatusFunctionArn: 'ferry-notifications-status', PlanFunctionArn: 'ferry-plan',
  CopyShardFunctionArn: 'ferry-copy-shard', PlanVerifyFunctionArn: 'ferry-plan-verify',
  VerifyShardFunctionArn: 'ferry-verify-shard', CleanupFunctionArn: 'ferry-cleanup',
};
const EXECUTION = 'arn:aws:states:us-east-1:123456789012:execution:ferry:local';
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

const LIMIT = 256 * 1024;
class DataLimitExceeded extends Error {
  constructor(what, bytes) { super(`${what}: ${bytes} bytes, over the 256 KiB limit`); this.name = 'States.DataLimitExceeded'; }
}
let uncatchable = null;
const bytes = (value) => Buffer.byteLength(JSON.stringify(value ?? null));

const calls = {};
const count = (state) => { calls[state] = (calls[state] ?? 0) + 1; };
const byArn = Object.fromEntries(Object.entries(functions).map(([k, v]) => [substitutions[k], v]));

async function invoke(state, params) {
  count(state);
  const name = byArn[params.FunctionName];
  if (bytes(params.Payload) > LIMIT) throw (uncatchable = new DataLimitExceeded(`${state}: the Lambda request`, bytes(params.Payload)));
  let body;
  const stub = stubs[name];
  if (stub && stub.echo_shard) {
    body = { ...stub.echo_shard, shard: params.Payload.shard, done: true };
  } else if (stub) {
    body = stub;
  } else {
    const response = await fetch(`${lambdaUrl}/2015-03-31/functions/${name}/invocations`, {
      method: 'POST', body: JSON.stringify(params.Payload),
    });
    body = await response.json();
  }
  if (body && body.errorType) {
    // lambda:invoke reports a function error under the function's own error type.
    const error = new Error(body.errorMessage);
    error.name = body.errorType;
    throw error;
  }
  if (bytes(body) > LIMIT) throw (uncatchable = new DataLimitExceeded(`${state}: the Lambda response`, bytes(body)));
  return { Payload: body, StatusCode: 200 };
}

// `$.a.b` of `value`; the only JSONPath the definition uses in ItemReader/ResultWriter.
const at = (value, path) => path.replace(/^\$\.?/, '').split('.').filter(Boolean).reduce((v, k) => v?.[k], value);
const resolve = (params, value) => Object.fromEntries(Object.entries(params).map(([k, v]) =>
  k.endsWith('.$') ? [k.slice(0, -2), at(value, v)] : [k, v]));
// S3 on moto, as the state machine's role: moto reads the caller from the Authorization
// header and does not check the signature.
function s3(method, bucket, key, body) {
  if (!awsUrl) throw new Error('a Map reads or writes S3: pass --aws with moto\'s URL');
  const authorization = 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0';
  return fetch(`${awsUrl}/${bucket}/${key}`, { method, body, headers: { authorization } });
}

// Map Runs, as the Map Run APIs report them.
const mapRuns = [];
const handlers = {};
const waits = {};
const retries = {};

// A Distributed Map with ItemReader/ResultWriter, as AWS runs it: `<name>` reads the items
// (keeping the Map's Catch), `<name> · map` maps over them, `<name> · results` writes the
// results and leaves only the ResultWriter's answer in the state.
function distribute(states, name) {
  const map = states[name];
  const mapped = `${name} · map`, written = `${name} · results`;
  const run = { name, arn: `arn:aws:states:us-east-1:123456789012:mapRun:ferry/${encodeURIComponent(name)}:${mapRuns.length + 1}`, start: Date.now() / 1000, failed: [] };
  const reader = map.ItemReader, writer = map.ResultWriter;
  const reading = {
    Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Comment: `harness: ${reader.Resource}`,
    Parameters: { 'state.$': '$' }, ResultPath: '$.__items', Next: mapped,
  };
  if (map.Catch) reading.Catch = map.Catch;
  handlers[name] = async ({ state }) => {
    mapRuns.push(run);
    const { Bucket, Key } = resolve(reader.Parameters, state);
    const response = await s3('GET', Bucket, Key);
    if (!response.ok) { const e = new Error(`s3://${Bucket}/${Key}: ${response.status}`); e.name = 'States.ItemReaderFailed'; throw e; }
    const items = JSON.parse(await response.text());
    maps[name] = { items: items.length, run: Math.min(items.length, mapItems) };
    return items.slice(0, mapItems);
  };
  const next = map.Next, resultPath = map.ResultPath;
  const mapping = { ...map, ItemsPath: '$.__items', ResultPath: '$.__results', Next: written };
  delete mapping.ItemReader; delete mapping.ResultWriter; delete mapping.ResultSelector;
  // A failed child fails the Map with States.ExceedToleratedFailureThreshold.
  const children = mapping.ItemProcessor.States;
  const failing = `${name} · child failed`, fail = `${name} · fail the map`;
  for (const state of Object.values(children)) {
    if (state.Type === 'Task') state.Catch = [...(state.Catch ?? []), { ErrorEquals: ['States.ALL'], ResultPath: '$.__error', Next: failing }];
  }
  children[failing] = { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Parameters: { 'error.$': '$.__error' }, Next: fail };
  children[fail] = { Type: 'Fail', Error: 'States.ExceedToleratedFailureThreshold', Cause: 'The specified tolerated failure threshold was exceeded' };
  handlers[failing] = ({ error }) => { run.failed.push({ error: error.Error, cause: error.Cause, at: Date.now() / 1000 }); return {}; };
  const writing = { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Comment: `harness: ${writer.Resource}`, Parameters: { 'state.$': '$' }, ResultPath: '$', Next: next };
  handlers[written] = async ({ state }) => {
    const { Bucket, Prefix } = resolve(writer.Parameters, state);
    const base = `${Prefix}/${run.arn.split(':').pop()}`;
    const put = (key, value) => s3('PUT', Bucket, key, JSON.stringify(value));
    await put(`${base}/SUCCEEDED_0.json`, state.__results.map((output, i) => ({ Status: 'SUCCEEDED', Output: JSON.stringify(output), Name: String(i) })));
    await put(`${base}/manifest.json`, { DestinationBucket: Bucket, MapRunArn: run.arn, ResultFiles: { SUCCEEDED: [{ Key: `${base}/SUCCEEDED_0.json` }], FAILED: [], PENDING: [] } });
    const out = { ...state };
    delete out.__items; delete out.__results;
    const field = resultPath.replace(/^\$\./, '');
    out[field] = { MapRunArn: run.arn, ResultWriterDetails: { Bucket, Key: `${base}/manifest.json` } };
    return out;
  };
  delete states[name];
  Object.assign(states, { [name]: reading, [mapped]: mapping, [written]: writing });
}

function visit(states) {
  for (const name of Object.keys(states)) {
    const state = states[name];
    if (state.Type === 'Map' && state.ItemReader) {
      distribute(states, name);
      visit(states[`${name} · map`].ItemProcessor.States);
    } else if (state.Type === 'Task' && state.Resource === 'arn:aws:states:::lambda:invoke') {
      handlers[name] ??= (params) => invoke(name, params);
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

// The Map Run APIs (awsJson1_0), for the step that looks a failed child up.
const sfnApi = {
  ListMapRuns: ({ executionArn }) => ({
    mapRuns: mapRuns.filter(() => executionArn === EXECUTION).map((r) => ({ executionArn: EXECUTION, mapRunArn: r.arn, stateMachineArn: `${r.arn}-machine`, startDate: r.start })),
  }),
  ListExecutions: ({ mapRunArn, statusFilter }) => {
    const run = mapRuns.find((r) => r.arn === mapRunArn);
    if (!run) return [400, { __type: 'ResourceNotFound', message: `Map Run ${mapRunArn} does not exist` }];
    const failed = statusFilter && statusFilter !== 'FAILED' ? [] : run.failed;
    return { executions: failed.map((f, i) => ({ executionArn: `${run.arn}/child:${i}`, stateMachineArn: `${run.arn}-machine`, name: `child-${i}`, status: 'FAILED', startDate: f.at, stopDate: f.at, mapRunArn: run.arn })) };
  },
  DescribeExecution: ({ executionArn }) => {
    const run = mapRuns.find((r) => executionArn.startsWith(`${r.arn}/child:`));
    const failure = run?.failed[Number(executionArn.split(':').pop())];
    if (!failure) return [400, { __type: 'ExecutionDoesNotExist', message: `Execution Does Not Exist: '${executionArn}'` }];
    return { executionArn, stateMachineArn: `${run.arn}-machine`, status: 'FAILED', startDate: failure.at, stopDate: failure.at, error: failure.error, cause: failure.cause, mapRunArn: run.arn };
  },
};
let server;
if (sfnPort) {
  server = createServer((req, res) => {
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => {
      const action = (req.headers['x-amz-target'] ?? '').split('.').pop();
      const api = sfnApi[action];
      let [status, answer] = api ? [200, api(JSON.parse(data || '{}'))] : [400, { __type: 'UnknownOperationException', message: action }];
      if (Array.isArray(answer)) [status, answer] = answer;
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0' });
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise((ok) => server.listen(Number(sfnPort), '127.0.0.1', ok));
}

const machine = new StateMachine(definition, { validationOptions: { checkArn: false } });
const execution = machine.run(input, {
  overrides: { taskResourceLocalHandlers: handlers, waitTimeOverrides: waits, retryIntervalOverrides: retries },
  // The runner has no task tokens of its own: the stand-ins answer instead of SendTaskSuccess.
  context: {
    Execution: { Id: EXECUTION, Input: input, StartTime: new Date().toISOString() },
    Task: { Token: 'local-task-token' },
  },
});

// Every state's input and output, as AWS measures them (the harness's own __items and
// __results stand for what AWS keeps outside the state).
let largest = 0, largestName = null, largestChild = 0;
const stateBytes = (value) => {
  if (value && typeof value === 'object' && !Array.isArray(value) && ('__items' in value || '__results' in value)) {
    const { __items, __results, ...rest } = value;
    return bytes(rest);
  }
  return bytes(value);
};
const watching = (async () => {
  for await (const event of execution.eventLogs) {
    if (event.type !== 'StateEntered' && event.type !== 'StateExited') continue;
    const size = Math.max(stateBytes(event.state.input), stateBytes(event.state.output));
    if (event.index === undefined && size > largest) [largest, largestName] = [size, event.state.name];
    if (event.index !== undefined) largestChild = Math.max(largestChild, size);
    if (size > LIMIT && !uncatchable) {
      uncatchable = new DataLimitExceeded(`state ${event.state.name}`, size);
      execution.abort();
    }
  }
})();
const sizes = () => ({ largest_state_bytes: largest, largest_state: largestName, largest_child_state_bytes: largestChild });
let result;
try {
  const output = await execution.result;
  result = { status: 'SUCCEEDED', output, calls };
} catch (e) {
  const cause = e.cause ?? {};
  result = { status: 'FAILED', error: cause.name ?? e.name, cause: cause.message ?? e.message, calls };
}
await Promise.race([watching, new Promise((ok) => setTimeout(ok, 1000))]);
if (uncatchable) {
  // No Catch sees it: the execution fails as is, whatever ran after.
  result = { status: 'FAILED', error: uncatchable.name, cause: uncatchable.message, uncaught: true, calls };
}
console.log(JSON.stringify({ ...result, ...sizes(), maps }));
server?.close();
