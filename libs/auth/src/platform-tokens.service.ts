import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { formatPlatformToken, generateSecret, hashSecret, randomId, secretMatches } from '@coffer/crypto';
import { PlatformTokensRepository } from './platform-tokens.repository';

@Injectable()
export class PlatformTokensService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly tokens: PlatformTokensRepository,
  ) {}

  async verify(tokenId: string, secret: string): Promise<boolean> {
    const hash = await this.tokens.activeSecretHash(tokenId);
    return hash !== undefined && secretMatches(secret, hash);
  }

  /**
   * At first start, creates the platform-admin bootstrap token and writes it once to
   * BOOTSTRAP_TOKEN_FILE (mode 0600), never to a log. The database keeps only its hash; should
   * the file not be written, no token is stored. Replicas starting together create one token.
   * Returns the file path when a token was created.
   */
  async bootstrap(): Promise<string | undefined> {
    const id = randomId();
    const secret = generateSecret();
    const path = this.config.BOOTSTRAP_TOKEN_FILE;
    const created = await this.tokens.insertFirst({ id, label: 'bootstrap', secretHash: hashSecret(secret) }, async () => {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, `${formatPlatformToken(id, secret)}\n`, { mode: 0o600 });
      await chmod(path, 0o600);
    });
    return created ? path : undefined;
  }
}
