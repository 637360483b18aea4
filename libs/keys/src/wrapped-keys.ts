import { Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { OrgRef, WRAPPED_KEY_HOLDER, WrappedKeyHolder } from '@coffer/tenancy';

/** One stored wrapped data key: its holder (the column), its row and what it holds now. */
export interface StoredWrappedKey {
  holder: WrappedKeyHolder;
  rowId: string;
  wrapped: string;
}

/**
 * The registry of every column that stores a data key wrapped by an org's KMS key: the
 * providers marked `@HoldsWrappedKeys()` by the libraries that own those tables (fields,
 * spool, packages, audit), found in whichever app loads their modules. libs/keys knows no table
 * of theirs; it counts and walks the holders in the order of their column names.
 */
@Injectable()
export class WrappedKeys implements OnApplicationBootstrap {
  private found?: readonly WrappedKeyHolder[];

  constructor(private readonly discovery: DiscoveryService) {}

  /** Fails the start of an app whose holders conflict, rather than its first rewrap. */
  onApplicationBootstrap(): void {
    this.holders();
  }

  holders(): readonly WrappedKeyHolder[] {
    this.found ??= discoverHolders(this.discovery);
    return this.found;
  }

  /** `table.column` of every holder, in walk order. */
  columns(): string[] {
    return this.holders().map((h) => h.wrappedKeyColumn);
  }

  /** How many stored data keys of the org each key version wraps, over every holder. */
  async countByVersion(org: OrgRef): Promise<Map<number, number>> {
    const counts = new Map<number, number>();
    for (const holder of this.holders()) {
      for (const [version, count] of await holder.countWrappedKeysByVersion(org)) counts.set(version, (counts.get(version) ?? 0) + count);
    }
    return counts;
  }

  /** Up to `limit` stored data keys wrapped under a version older than `latest`, holder after holder. */
  async olderThan(org: OrgRef, latest: number, limit: number): Promise<StoredWrappedKey[]> {
    const found: StoredWrappedKey[] = [];
    for (const holder of this.holders()) {
      if (found.length >= limit) break;
      const rows = await holder.wrappedKeysOlderThan(org, latest, limit - found.length);
      found.push(...rows.map((row) => ({ holder, rowId: row.rowId, wrapped: row.wrapped })));
    }
    return found;
  }

  /**
   * Swaps one wrapped value for its rewrapped twin, committed on its own, only if the row still
   * holds the old value (its holder's compare-and-swap). Returns whether it did.
   */
  replace(org: OrgRef, key: StoredWrappedKey, rewrapped: string): Promise<boolean> {
    return key.holder.replaceWrappedKey(org, { rowId: key.rowId, wrapped: key.wrapped }, rewrapped);
  }
}

const METHODS = ['countWrappedKeysByVersion', 'wrappedKeysOlderThan', 'replaceWrappedKey'] as const;

function discoverHolders(discovery: DiscoveryService): WrappedKeyHolder[] {
  const byColumn = new Map<string, { owner: Function; holder: WrappedKeyHolder }>();
  for (const wrapper of discovery.getProviders()) {
    const { metatype, instance } = wrapper;
    if (!metatype || !instance || !Reflect.getMetadata(WRAPPED_KEY_HOLDER, metatype)) continue;
    const holder = instance as WrappedKeyHolder;
    const column = holder.wrappedKeyColumn;
    if (typeof column !== 'string' || METHODS.some((m) => typeof holder[m] !== 'function')) {
      throw new Error(`${metatype.name} is marked @HoldsWrappedKeys() but is not a WrappedKeyHolder`);
    }
    const seen = byColumn.get(column);
    // The same repository provided by two modules holds the same column: one is enough.
    if (seen && seen.owner !== metatype) throw new Error(`wrapped-key column ${column} is held by both ${seen.owner.name} and ${metatype.name}`);
    if (!seen) byColumn.set(column, { owner: metatype, holder });
  }
  return [...byColumn.keys()].sort().map((column) => byColumn.get(column)!.holder);
}
