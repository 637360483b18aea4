import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '@coffer/config';
import { DatabaseService, ownerUrlOf, withClient } from '@coffer/database';

/** `platform_admin_tokens` of the control plane: hashes only, never a token. */
@Injectable()
export class PlatformTokensRepository {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly db: DatabaseService,
  ) {}

  /** The secret's hash of a token that exists and is not revoked. */
  async activeSecretHash(tokenId: string): Promise<Buffer | undefined> {
    const { rows } = await this.db.control.query<{ secret_hash: Buffer }>(
      'SELECT secret_hash FROM platform_admin_tokens WHERE id = $1 AND revoked_at IS NULL',
      [tokenId],
    );
    return rows.length === 1 ? rows[0].secret_hash : undefined;
  }

  /**
   * Inserts `token` only if there is no token at all, with the owner credentials on a connection
   * of its own, under a table lock, so replicas starting together insert one. `keep` runs before
   * the commit: if it fails, the insert rolls back. Returns whether the token was inserted.
   */
  async insertFirst(token: { id: string; label: string; secretHash: Buffer }, keep: () => Promise<void>): Promise<boolean> {
    return withClient(ownerUrlOf(this.config), async (owner) => {
      await owner.query('BEGIN');
      try {
        await owner.query('LOCK TABLE platform_admin_tokens IN EXCLUSIVE MODE');
        const { rowCount } = await owner.query('SELECT 1 FROM platform_admin_tokens LIMIT 1');
        if (rowCount) {
          await owner.query('COMMIT');
          return false;
        }
        await owner.query('INSERT INTO platform_admin_tokens (id, label, secret_hash) VALUES ($1, $2, $3)', [
          token.id,
          token.label,
          token.secretHash,
        ]);
        await keep();
        await owner.query('COMMIT');
        return true;
      } catch (error) {
        await owner.query('ROLLBACK');
        throw error;
      }
    });
  }
}
