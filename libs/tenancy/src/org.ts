export type OrgStatus = 'provisioning' | 'active';

/** An organization as the registry knows it: who it is and where its database lives. */
export interface OrgRef {
  id: string;
  slug: string;
  name: string;
  databaseName: string;
  databaseServer: string;
  status: OrgStatus;
  createdAt: Date;
  provisionedAt: Date | null;
}

export interface OrgRow {
  id: string;
  slug: string;
  name: string;
  database_name: string;
  database_server: string;
  status: OrgStatus;
  created_at: Date;
  provisioned_at: Date | null;
}

export function toOrgRef(row: OrgRow): OrgRef {
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    databaseName: row.database_name,
    databaseServer: row.database_server,
    status: row.status,
    createdAt: row.created_at,
    provisionedAt: row.provisioned_at,
  };
}

/** What the API shows of an organization (never where its database is). */
export function publicOrg(org: OrgRef) {
  return { id: org.id, slug: org.slug, name: org.name, status: org.status, createdAt: org.createdAt };
}

export const SLUG_PATTERN = /^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/;
