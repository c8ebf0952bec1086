#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { buildPipelineApp } from '../lib/pipeline-app';

buildPipelineApp(new App());
