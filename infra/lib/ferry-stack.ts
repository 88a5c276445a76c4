// ferry's AWS stack in CDK: the same resources as ../template.yaml (SAM), built from the same
// state machine definition (../statemachine/migration.asl.json) and the same Rust step binaries
// (cargo lambda). tests/infra.rs synthesizes both and compares them resource by resource, so
// the two cannot drift apart unnoticed.

import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import {
  Stack, StackProps, CfnParameter, CfnOutput, Fn, Aws, DockerImage, ILocalBundling,
  aws_iam as iam, aws_lambda as lambda, aws_s3_assets as assets, aws_sqs as sqs,
  aws_sns as sns, aws_ecs as ecs, aws_logs as logs, aws_stepfunctions as sfn,
  aws_scheduler as scheduler, aws_cloudwatch as cloudwatch, aws_events as events, aws_ec2 as ec2, aws_s3 as s3,
  CfnCondition,
} from 'aws-cdk-lib';
import { Construct } from 'constructs';

const ROOT = path.join(__dirname, '..', '..');

/** Where `cargo lambda build` put every step binary, once built in this synth. */
let lambdaDir: string | undefined;

/**
 * Bundles one step binary with cargo lambda on this machine (no Docker needed): the first
 * function builds all ten in one `cargo lambda build` (shared dependencies compile once), the
 * others copy theirs.
 */
class CargoLambda implements ILocalBundling {
  constructor(private readonly binary: string) {}
  tryBundle(outputDir: string): boolean {
    if (lambdaDir === undefined) {
      fs.mkdirSync(path.join(ROOT, 'target'), { recursive: true });
      const dir = fs.mkdtempSync(path.join(ROOT, 'target', 'cdk-'));
      execFileSync('cargo', ['lambda', 'build', '--release', '--arm64', '-p', 'ferry-steps',
        '--lambda-dir', dir], { cwd: ROOT, stdio: 'inherit' });
      lambdaDir = dir;
    }
    fs.copyFileSync(path.join(lambdaDir, this.binary, 'bootstrap'), path.join(outputDir, 'bootstrap'));
    return true;
  }
}

/** A step: binary, description, IAM statements, memory, and whether it talks to Redis (then it runs in the VPC). */
interface Step {
  id: string;
  binary: string;
  description: string;
  statements: iam.PolicyStatementProps[];
  memory?: number;
  inVpc?: boolean;
  env?: Record<string, string>;
}

const ANY = ['*'];

export class FerryStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    this.templateOptions.description =
      'ferry: migrate a live ElastiCache (Redis OSS / Valkey) keyspace to another Redis with no downtime (CDK).';

    const subnetIds = new CfnParameter(this, 'SubnetIds', { type: 'List<AWS::EC2::Subnet::Id>',
      description: 'Private subnets that reach both the source and the target (the five Lambdas that talk to Redis and the tail run here). They need a NAT gateway, or CreateVpcEndpoints.' });
    const securityGroupIds = new CfnParameter(this, 'SecurityGroupIds', { type: 'List<AWS::EC2::SecurityGroup::Id>',
      description: 'Security groups allowed to connect to the source and the target.' });
    const sourceSecretArn = new CfnParameter(this, 'SourceSecretArn', { type: 'String',
      description: 'Secrets Manager ARN of the source\'s credentials.' });
    const targetSecretArn = new CfnParameter(this, 'TargetSecretArn', { type: 'String',
      description: 'Secrets Manager ARN of the target\'s credentials.' });
    const tailImageUri = new CfnParameter(this, 'TailImageUri', { type: 'String',
      description: 'Container image of `ferry` (infra/Dockerfile), pushed to ECR.' });
    const createVpcEndpoints = new CfnParameter(this, 'CreateVpcEndpoints', { type: 'String',
      allowedValues: ['true', 'false'], default: 'false',
      description: '"true" creates the VPC endpoints the in-VPC parts need (interface: Secrets Manager, Step Functions, SQS, Logs, ECR api and dkr; gateway: S3); "false" when the subnets reach AWS through a NAT gateway.' });
    const secretsKmsKeyArn = new CfnParameter(this, 'SecretsKmsKeyArn', { type: 'String', default: '',
      description: 'The customer-managed KMS key the two secrets are encrypted with, if any: the parts that read them get kms:Decrypt on it, through Secrets Manager only. Empty for the AWS-managed key (aws/secretsmanager), which needs no grant.' });
    const vpcId = new CfnParameter(this, 'VpcId', { type: 'AWS::EC2::VPC::Id',
      description: 'The VPC of SubnetIds (where CreateVpcEndpoints puts the endpoints).' });
    const routeTableIds = new CfnParameter(this, 'RouteTableIds', { type: 'CommaDelimitedList', default: '',
      description: 'The route tables of SubnetIds, for the S3 gateway endpoint (with CreateVpcEndpoints).' });
    const scheduleExpression = new CfnParameter(this, 'ScheduleExpression', { type: 'String',
      default: 'rate(1 day)', description: 'When the schedule starts a migration (created disabled).' });
    const scheduleInput = new CfnParameter(this, 'ScheduleInput', { type: 'String', default: '{}',
      description: 'The execution input the schedule starts with.' });
    // ARNs of secrets, not secrets: nothing to hide.
    const secrets = [sourceSecretArn.valueAsString, targetSecretArn.valueAsString];
    const ec = `arn:${Aws.PARTITION}:elasticache:${Aws.REGION}:${Aws.ACCOUNT_ID}`;
    const readSecrets: iam.PolicyStatementProps = { actions: ['secretsmanager:GetSecretValue'], resources: secrets };
    // IAM auth to ElastiCache (source.iam / target.iam): a token signed per connection.
    const connectIam: iam.PolicyStatementProps = { actions: ['elasticache:Connect'],
      resources: [`${ec}:replicationgroup:*`, `${ec}:serverlesscache:*`, `${ec}:user:*`] };
    // kms:Decrypt on the secrets' customer-managed key, when there is one, through Secrets Manager only.
    new CfnCondition(this, 'HasSecretsKey', { expression: Fn.conditionNot(Fn.conditionEquals(secretsKmsKeyArn.valueAsString, '')) });
    const decryptSecrets = Fn.conditionIf('HasSecretsKey', {
      Effect: 'Allow', Action: 'kms:Decrypt', Resource: secretsKmsKeyArn.valueAsString,
      Condition: { StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` } },
    }, Aws.NO_VALUE);

    const machineName = `${Aws.STACK_NAME}-migration`;
    const machineArn = `arn:${Aws.PARTITION}:states:${Aws.REGION}:${Aws.ACCOUNT_ID}:stateMachine:${machineName}`;
    const executions = `arn:${Aws.PARTITION}:states:${Aws.REGION}:${Aws.ACCOUNT_ID}:execution:${machineName}`;
    const mapRuns = `arn:${Aws.PARTITION}:states:${Aws.REGION}:${Aws.ACCOUNT_ID}:mapRun:${machineName}`;

    // Shard plans (Plan, Plan verify) and the Distributed Maps' results: no key data, only node
    // addresses and cursor ranges; kept two weeks.
    const planBucket = new s3.CfnBucket(this, 'PlanBucket', {
      bucketEncryption: { serverSideEncryptionConfiguration: [{ serverSideEncryptionByDefault: { sseAlgorithm: 'AES256' } }] },
      publicAccessBlockConfiguration: { blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
      ownershipControls: { rules: [{ objectOwnership: 'BucketOwnerEnforced' }] },
      lifecycleConfiguration: { rules: [{ id: 'expire', status: 'Enabled', expirationInDays: 14 }] },
    });
    const writePlans: iam.PolicyStatementProps = { actions: ['s3:PutObject'], resources: [`${planBucket.attrArn}/plans/*`] };
    const planEnv = { FERRY_PLAN_BUCKET: planBucket.ref };

    const steps: Step[] = [
      { id: 'Inventory', inVpc: true, binary: 'ferry-inventory', description: 'Preflight of both servers before anything is written.', statements: [readSecrets, connectIam] },
      { id: 'Plan', inVpc: true, binary: 'ferry-plan', description: 'The shard plan (SCAN cursor ranges).', statements: [readSecrets, connectIam, writePlans], env: planEnv },
      { id: 'CopyShard', inVpc: true, binary: 'ferry-copy-shard', description: 'Copies one shard from its cursor until the time budget runs out.', statements: [readSecrets, connectIam], memory: 1769 },
      { id: 'PlanVerify', inVpc: true, binary: 'ferry-plan-verify', description: 'The verify shards, both directions.', statements: [readSecrets, connectIam, writePlans], env: planEnv },
      { id: 'VerifyShard', inVpc: true, binary: 'ferry-verify-shard', description: 'Verifies one shard from its cursor until the time budget runs out.', statements: [readSecrets, connectIam] },
      { id: 'Backup', binary: 'ferry-backup', description: 'Requests an ElastiCache snapshot of the source.', statements: [
        // Snapshots are named ferry-<migration_id>-<execution start>.
        { actions: ['elasticache:CreateSnapshot'], resources: [`${ec}:replicationgroup:*`, `${ec}:snapshot:ferry-*`] },
        { actions: ['elasticache:CreateServerlessCacheSnapshot'], resources: [`${ec}:serverlesscache:*`, `${ec}:serverlesscachesnapshot:ferry-*`] },
        // Describe calls take no resource-level permissions.
        { actions: ['elasticache:DescribeSnapshots', 'elasticache:DescribeServerlessCacheSnapshots'], resources: ANY }] },
      { id: 'BackupStatus', binary: 'ferry-backup-status', description: 'Reports the snapshot\'s status.', statements: [{ actions: [
        'elasticache:DescribeSnapshots', 'elasticache:DescribeServerlessCacheSnapshots'], resources: ANY }] },
      { id: 'EnableNotifications', binary: 'ferry-enable-notifications', description: 'Sets notify-keyspace-events through the source\'s cache parameter group.', statements: [{ actions: [
        'elasticache:DescribeReplicationGroups', 'elasticache:DescribeCacheClusters', 'elasticache:DescribeCacheParameterGroups',
        'elasticache:DescribeCacheParameters', 'elasticache:DescribeEngineDefaultParameters'], resources: ANY },
        // ferry edits only the groups it creates (ferry-<replication group>), never the source's own.
        { actions: ['elasticache:CreateCacheParameterGroup', 'elasticache:ModifyCacheParameterGroup'], resources: [`${ec}:parametergroup:ferry-*`] },
        // Attaching ferry's group (and, on a refusal, the original again).
        { actions: ['elasticache:ModifyReplicationGroup'], resources: [`${ec}:replicationgroup:*`, `${ec}:parametergroup:*`] }] },
      { id: 'NotificationsStatus', binary: 'ferry-notifications-status', description: 'Reports whether every member applies the parameter group.', statements: [{ actions: [
        'elasticache:DescribeCacheClusters'], resources: ANY }] },
      { id: 'Cleanup', binary: 'ferry-cleanup', description: 'Puts back the notification settings (also after an abort or an uncaught failure).', statements: [{ actions: [
        'elasticache:DescribeCacheClusters'], resources: ANY },
        // The original group back on the replication group; ferry's own group deleted.
        { actions: ['elasticache:ModifyReplicationGroup'], resources: [`${ec}:replicationgroup:*`, `${ec}:parametergroup:*`] },
        { actions: ['elasticache:DeleteCacheParameterGroup'], resources: [`${ec}:parametergroup:ferry-*`] },
        // An execution that ended outside the state machine's Catch: its input and history.
        { actions: ['states:DescribeExecution', 'states:GetExecutionHistory'], resources: [`${executions}:*`] },
        // A failed Distributed Map: its Map Runs and their failed child executions.
        { actions: ['states:ListMapRuns'], resources: [`${executions}:*`] },
        { actions: ['states:ListExecutions'], resources: [`${mapRuns}/*`] },
        { actions: ['states:DescribeExecution'], resources: [`${executions}/*`] },
        // A tail task that stopped before it was ready: its start token fails at once.
        { actions: ['states:SendTaskFailure'], resources: ANY }] },
    ];

    const functions: Record<string, lambda.CfnFunction> = {};
    for (const step of steps) {
      const role = new iam.CfnRole(this, `${step.id}FunctionRole`, {
        assumeRolePolicyDocument: assume('lambda.amazonaws.com'),
        managedPolicyArns: [
          `arn:${Aws.PARTITION}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole`,
          ...(step.inVpc ? [`arn:${Aws.PARTITION}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole`] : []),
        ],
        policies: [policy(`${step.id}FunctionPolicy`, step.statements, step.inVpc ? [decryptSecrets] : [])],
      });
      const code = new assets.Asset(this, `${step.id}Code`, {
        path: ROOT,
        exclude: ['target', '**/node_modules', '.git', 'infra/cdk.out', 'bench'],
        bundling: {
          image: DockerImage.fromRegistry('public.ecr.aws/sam/build-provided.al2023'),
          local: new CargoLambda(step.binary),
        },
      });
      const fn = new lambda.CfnFunction(this, `${step.id}Function`, {
        description: step.description,
        runtime: 'provided.al2023',
        architectures: ['arm64'],
        handler: 'bootstrap',
        memorySize: step.memory ?? 1024,
        timeout: 900,
        role: role.attrArn,
        code: { s3Bucket: code.s3BucketName, s3Key: code.s3ObjectKey },
        vpcConfig: step.inVpc ? { subnetIds: subnetIds.valueAsList, securityGroupIds: securityGroupIds.valueAsList } : undefined,
        environment: { variables: { RUST_LOG: 'info', ...step.env } },
      });
      fn.addMetadata('BuildProperties', { Binary: step.binary });
      functions[step.id] = fn;
    }

    // Step Functions runs no Catch on an abort, a timeout, or a States.Runtime / data or history
    // limit failure: EventBridge tells Cleanup instead (the ARN from the machine's fixed name).
    const executionEnded = new events.CfnRule(this, 'CleanupFunctionExecutionEnded', {
      eventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED', 'TIMED_OUT', 'FAILED'], stateMachineArn: [machineArn] },
      },
      targets: [{ id: 'Cleanup', arn: functions.Cleanup.attrArn }],
    });
    new lambda.CfnPermission(this, 'CleanupFunctionExecutionEndedPermission', {
      action: 'lambda:InvokeFunction', functionName: functions.Cleanup.ref,
      principal: 'events.amazonaws.com', sourceArn: executionEnded.attrArn,
    });

    // Private subnets without a NAT gateway reach AWS only through these (CreateVpcEndpoints).
    const createEndpoints = new CfnCondition(this, 'CreateEndpoints', {
      expression: Fn.conditionEquals(createVpcEndpoints.valueAsString, 'true') });
    const interfaces: [string, string][] = [['SecretsManager', 'secretsmanager'], ['StepFunctions', 'states'],
      ['Sqs', 'sqs'], ['Logs', 'logs'], ['EcrApi', 'ecr.api'], ['EcrDkr', 'ecr.dkr']];
    for (const [id, service] of interfaces) {
      const endpoint = new ec2.CfnVPCEndpoint(this, `${id}Endpoint`, {
        vpcEndpointType: 'Interface', serviceName: `com.amazonaws.${Aws.REGION}.${service}`,
        vpcId: vpcId.valueAsString, subnetIds: subnetIds.valueAsList,
        securityGroupIds: securityGroupIds.valueAsList, privateDnsEnabled: true });
      endpoint.cfnOptions.condition = createEndpoints;
    }
    const s3Endpoint = new ec2.CfnVPCEndpoint(this, 'S3Endpoint', {
      vpcEndpointType: 'Gateway', serviceName: `com.amazonaws.${Aws.REGION}.s3`,
      vpcId: vpcId.valueAsString, routeTableIds: routeTableIds.valueAsList });
    s3Endpoint.cfnOptions.condition = createEndpoints;

    const controlQueue = new sqs.CfnQueue(this, 'ControlQueue', {
      visibilityTimeout: 60, messageRetentionPeriod: 86400, sqsManagedSseEnabled: true });
    const cutoverTopic = new sns.CfnTopic(this, 'CutoverTopic', { displayName: 'ferry cutover' });
    const tailCluster = new ecs.CfnCluster(this, 'TailCluster');
    // A tail task that stopped (its image could not be pulled, it crashed before ready).
    const tailTaskStopped = new events.CfnRule(this, 'CleanupFunctionTailTaskStopped', {
      eventPattern: {
        source: ['aws.ecs'],
        'detail-type': ['ECS Task State Change'],
        detail: { clusterArn: [tailCluster.attrArn], lastStatus: ['STOPPED'] },
      },
      targets: [{ id: 'Cleanup', arn: functions.Cleanup.attrArn }],
    });
    new lambda.CfnPermission(this, 'CleanupFunctionTailTaskStoppedPermission', {
      action: 'lambda:InvokeFunction', functionName: functions.Cleanup.ref,
      principal: 'events.amazonaws.com', sourceArn: tailTaskStopped.attrArn,
    });
    const tailLogGroup = new logs.CfnLogGroup(this, 'TailLogGroup', { retentionInDays: 30 });

    const tailExecutionRole = new iam.CfnRole(this, 'TailExecutionRole', {
      assumeRolePolicyDocument: assume('ecs-tasks.amazonaws.com'),
      managedPolicyArns: [`arn:${Aws.PARTITION}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy`],
    });
    const tailTaskRole = new iam.CfnRole(this, 'TailTaskRole', {
      assumeRolePolicyDocument: assume('ecs-tasks.amazonaws.com'),
      policies: [policy('tail', [
        readSecrets,
        connectIam,
        { actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility'], resources: [controlQueue.attrArn] },
        { actions: ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'], resources: ANY },
        { actions: ['states:DescribeExecution'], resources: [`${executions}:*`] },
      ], [decryptSecrets])],
    });
    const tailTask = new ecs.CfnTaskDefinition(this, 'TailTaskDefinition', {
      requiresCompatibilities: ['FARGATE'],
      networkMode: 'awsvpc',
      cpu: '1024',
      memory: '2048',
      runtimePlatform: { cpuArchitecture: 'ARM64', operatingSystemFamily: 'LINUX' },
      executionRoleArn: tailExecutionRole.attrArn,
      taskRoleArn: tailTaskRole.attrArn,
      containerDefinitions: [{
        name: 'tail',
        image: tailImageUri.valueAsString,
        command: ['tail', '--from-state-machine', '--log-json', '-v'],
        essential: true,
        stopTimeout: 120,
        environment: [
          { name: 'FERRY_CONTROL_QUEUE_URL', value: controlQueue.ref },
          { name: 'FERRY_LOG', value: 'info' },
        ],
        logConfiguration: { logDriver: 'awslogs', options: {
          'awslogs-group': tailLogGroup.ref, 'awslogs-region': Aws.REGION, 'awslogs-stream-prefix': 'tail' } },
      }],
    });

    const machineRole = new iam.CfnRole(this, 'MigrationStateMachineRole', {
      assumeRolePolicyDocument: assume('states.amazonaws.com'),
      policies: [policy('MigrationStateMachinePolicy', [
        { actions: ['lambda:InvokeFunction'], resources: Object.values(functions).flatMap((f) => [f.attrArn, `${f.attrArn}:*`]) },
        { actions: ['sqs:SendMessage'], resources: [controlQueue.attrArn] },
        { actions: ['sns:Publish'], resources: [cutoverTopic.ref] },
        { actions: ['ecs:RunTask'], resources: [tailTask.ref] },
        { actions: ['iam:PassRole'], resources: [tailExecutionRole.attrArn, tailTaskRole.attrArn] },
        // ItemReader reads the plans; ResultWriter writes the Maps' results.
        { actions: ['s3:GetObject'], resources: [`${planBucket.attrArn}/plans/*`] },
        { actions: ['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'], resources: [`${planBucket.attrArn}/results/*`] },
        { actions: ['states:StartExecution', 'states:DescribeExecution', 'states:StopExecution'], resources: [machineArn, `${executions}/*`] },
      ])],
    });
    const substitutions: Record<string, string> = {
      ControlQueueUrl: controlQueue.ref,
      CutoverTopicArn: cutoverTopic.ref,
      TailClusterArn: tailCluster.attrArn,
      TailTaskDefinitionArn: tailTask.ref,
      SubnetIds: Fn.join(',', subnetIds.valueAsList),
      SecurityGroupIds: Fn.join(',', securityGroupIds.valueAsList),
    };
    for (const [stepId, fn] of Object.entries(functions)) {
      substitutions[`${stepId}FunctionArn`] = fn.attrArn;
    }
    const machine = new sfn.CfnStateMachine(this, 'MigrationStateMachine', {
      stateMachineName: machineName,
      roleArn: machineRole.attrArn,
      definitionString: fs.readFileSync(path.join(ROOT, 'statemachine', 'migration.asl.json'), 'utf8'),
      definitionSubstitutions: substitutions,
    });

    const scheduleRole = new iam.CfnRole(this, 'MigrationStateMachineScheduleRole', {
      assumeRolePolicyDocument: assume('scheduler.amazonaws.com'),
      policies: [policy('StartExecution', [{ actions: ['states:StartExecution'], resources: [machine.ref] }])],
    });
    new scheduler.CfnSchedule(this, 'MigrationStateMachineSchedule', {
      scheduleExpression: scheduleExpression.valueAsString,
      flexibleTimeWindow: { mode: 'OFF' },
      state: 'DISABLED',
      target: { arn: machine.ref, roleArn: scheduleRole.attrArn, input: scheduleInput.valueAsString },
    });

    new cloudwatch.CfnAlarm(this, 'FailedExecutionsAlarm', {
      alarmDescription: 'A ferry migration failed.',
      namespace: 'AWS/States', metricName: 'ExecutionsFailed',
      dimensions: [{ name: 'StateMachineArn', value: machine.ref }],
      statistic: 'Sum', period: 300, evaluationPeriods: 1, threshold: 1,
      comparisonOperator: 'GreaterThanOrEqualToThreshold', treatMissingData: 'notBreaching',
      alarmActions: [cutoverTopic.ref],
    });
    new cloudwatch.CfnAlarm(this, 'TailLagAlarm', {
      alarmDescription: 'The live tail\'s p99 lag stayed above 5 s for 5 minutes.',
      namespace: 'ferry', metricName: 'TailLagP99Ms',
      statistic: 'Maximum', period: 60, evaluationPeriods: 5, threshold: 5000,
      comparisonOperator: 'GreaterThanThreshold', treatMissingData: 'notBreaching',
      alarmActions: [cutoverTopic.ref],
    });
    const search = (metric: string, stat: string) =>
      `SEARCH('{ferry,MigrationId} MetricName="${metric}"', '${stat}', 60)`;
    new cloudwatch.CfnDashboard(this, 'Dashboard', {
      dashboardName: `${Aws.STACK_NAME}-ferry`,
      dashboardBody: Stack.of(this).toJsonString({ widgets: [
        { type: 'metric', x: 0, y: 0, width: 12, height: 6, properties: { title: 'Keys copied', region: Aws.REGION,
          stat: 'Sum', period: 60, metrics: [[{ expression: `SUM(${search('KeysCopied', 'Sum')})`, id: 'keys' }]] } },
        { type: 'metric', x: 12, y: 0, width: 12, height: 6, properties: { title: 'Tail lag p99 (ms)', region: Aws.REGION,
          stat: 'Maximum', period: 60, metrics: [[{ expression: search('TailLagP99Ms', 'Maximum'), id: 'lag' }]] } },
        { type: 'metric', x: 0, y: 6, width: 12, height: 6, properties: { title: 'Executions', region: Aws.REGION,
          stat: 'Sum', period: 300, metrics: [
            ['AWS/States', 'ExecutionsSucceeded', 'StateMachineArn', machine.ref],
            ['AWS/States', 'ExecutionsFailed', 'StateMachineArn', machine.ref]] } },
      ] }),
    });

    new CfnOutput(this, 'StateMachineArn', { value: machine.ref, description: 'Start migrations here (ferry start --stack reads it).' });
    new CfnOutput(this, 'ControlQueueUrl', { value: controlQueue.ref, description: 'The tail\'s control queue.' });
    new CfnOutput(this, 'CutoverTopicArn', { value: cutoverTopic.ref, description: 'Subscribe to be told when the target is ready for cutover.' });
    new CfnOutput(this, 'TailClusterArn', { value: tailCluster.attrArn, description: 'Where the tail runs.' });
  }
}

function assume(service: string): unknown {
  return new iam.PolicyDocument({ statements: [new iam.PolicyStatement({
    actions: ['sts:AssumeRole'], principals: [new iam.ServicePrincipal(service)] })] });
}

/** An inline policy of `statements`, and `conditional` ones (`Fn::If` statements) after them. */
function policy(name: string, statements: iam.PolicyStatementProps[], conditional: unknown[] = []): iam.CfnRole.PolicyProperty {
  return { policyName: name, policyDocument: { Version: '2012-10-17', Statement: [
    ...statements.map((s) => new iam.PolicyStatement(s).toStatementJson()), ...conditional] } };
}
