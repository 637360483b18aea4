import 'reflect-metadata';
process.env.COFFER_SERVICE ??= 'worker';
import { runService } from '@coffer/kms';
import { createWorker } from './bootstrap';

runService('worker', 'refused', (config) => createWorker(config));
