import { Injectable } from '@nestjs/common';
import { DatabaseService } from '@coffer/database';
import { FieldKeysService, ORG_SETTING_VALUE } from '@coffer/fields';
import { OrgRef } from '@coffer/tenancy';

/** An org's settings: keys in clear, values sealed with the org's field codec, bound to their key. */
@Injectable()
export class OrgSettingsRepository {
  constructor(
    private readonly db: DatabaseService,
    private readonly fieldKeys: FieldKeysService,
  ) {}

  async set(org: OrgRef, key: string, value: string): Promise<void> {
    const sealed = (await this.fieldKeys.codec(org)).seal(value, { ...ORG_SETTING_VALUE, rowId: key });
    await this.pool(org).query(
      `INSERT INTO org_settings (key, value) VALUES ($1, $2)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()`,
      [key, sealed],
    );
  }

  async get(org: OrgRef, key: string): Promise<string | undefined> {
    const codec = await this.fieldKeys.codec(org);
    const { rows } = await this.pool(org).query<{ value: Buffer }>('SELECT value FROM org_settings WHERE key = $1', [key]);
    return rows[0] && codec.open(rows[0].value, { ...ORG_SETTING_VALUE, rowId: key });
  }

  async all(org: OrgRef): Promise<Record<string, string>> {
    const codec = await this.fieldKeys.codec(org);
    const { rows } = await this.pool(org).query<{ key: string; value: Buffer }>('SELECT key, value FROM org_settings ORDER BY key');
    return Object.fromEntries(rows.map((r) => [r.key, codec.open(r.value, { ...ORG_SETTING_VALUE, rowId: r.key })]));
  }

  private pool(org: OrgRef) {
    return this.db.org(org.databaseName, org.databaseServer);
  }
}
