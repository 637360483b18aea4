import 'reflect-metadata';
process.env.COFFER_SERVICE ??= 'provisioner';
import { runService } from '@coffer/kms';
import { createProvisioner } from './bootstrap';

runService('provisioner', 'required', (config) => createProvisioner(config));
