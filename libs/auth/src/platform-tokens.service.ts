import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { formatPlatformToken, generateSecret, hashSecret, randomId, secretMatches } from '@coffer/crypto';
import { DatabaseService, withClient } from '@coffer/database';

@Injectable()
export class PlatformTokensService {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly db: DatabaseService,
  ) {}

  async verify(tokenId: string, secret: string): Promise<boolean> {
    const { rows } = await this.db.control.query<{ secret_hash: Buffer }>(
      'SELECT secret_hash FROM platform_admin_tokens WHERE id = $1 AND revoked_at IS NULL',
      [tokenId],
    );
    return rows.length === 1 && secretMatches(secret, rows[0].secret_hash);
  }

  /**
   * At first start, creates the platform-admin bootstrap token and writes it once to
   * BOOTSTRAP_TOKEN_FILE (mode 0600), never to a log. The database keeps only its hash. Runs
   * with the owner credentials under a lock, so replicas starting together create one token.
   * Returns the file path when a token was created.
   */
  async bootstrap(): Promise<string | undefined> {
    return withClient(this.config.DATABASE_OWNER_URL, async (owner) => {
      await owner.query('BEGIN');
      try {
        await owner.query('LOCK TABLE platform_admin_tokens IN EXCLUSIVE MODE');
        const { rowCount } = await owner.query('SELECT 1 FROM platform_admin_tokens LIMIT 1');
        if (rowCount) {
          await owner.query('COMMIT');
          return undefined;
        }
        const id = randomId();
        const secret = generateSecret();
        await owner.query('INSERT INTO platform_admin_tokens (id, label, secret_hash) VALUES ($1, $2, $3)', [
          id,
          'bootstrap',
          hashSecret(secret),
        ]);
        const path = this.config.BOOTSTRAP_TOKEN_FILE;
        await mkdir(dirname(path), { recursive: true });
        await writeFile(path, `${formatPlatformToken(id, secret)}\n`, { mode: 0o600 });
        await chmod(path, 0o600);
        await owner.query('COMMIT');
        return path;
      } catch (error) {
        await owner.query('ROLLBACK');
        throw error;
      }
    });
  }
}
