#!/usr/bin/env node
// `cdk synth` / `cdk deploy` entry: one stack, named by `-c stackName=…` (default `ferry`).
import { App } from 'aws-cdk-lib';
import { FerryStack } from '../lib/ferry-stack';

const app = new App();
new FerryStack(app, app.node.tryGetContext('stackName') ?? 'ferry');
