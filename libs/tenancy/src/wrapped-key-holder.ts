import { SetMetadata } from '@nestjs/common';
import type { OrgRef } from './org';

/** One stored wrapped data key: the row holding it and the value it holds now. */
export interface WrappedKeyRow {
  rowId: string;
  wrapped: string;
}

/**
 * A column of an org database that stores data keys wrapped by the org's KMS key
 * (`<kind>:v<N>:<base64>`). The repository of the library that owns the table implements it
 * (the SQL stays with its table) and is marked `@HoldsWrappedKeys()`; libs/keys finds every
 * holder and is the only caller (counts, rewrap, and whatever else the org key's lifecycle needs).
 */
export interface WrappedKeyHolder {
  /** `table.column`: names the holder, unique among holders, and orders the rewrap's walk. */
  readonly wrappedKeyColumn: string;
  /**
   * How many values each key version wraps, in the caller's unit of work. A value in another
   * form (sealed to the spool key, `spool:...`) is not KMS-wrapped and is not counted.
   */
  countWrappedKeysByVersion(org: OrgRef): Promise<Map<number, number>>;
  /** Up to `limit` values wrapped under a version older than `version` (in the caller's unit of work). */
  wrappedKeysOlderThan(org: OrgRef, version: number, limit: number): Promise<WrappedKeyRow[]>;
  /**
   * Compare-and-swap, committed on its own (`@OutsideTransaction()`): stores `rewrapped` (and
   * its version in the table's version column, if it has one) only if the row still holds
   * `key.wrapped`, so a concurrent writer's new key is never overwritten. Returns whether it did.
   */
  replaceWrappedKey(org: OrgRef, key: WrappedKeyRow, rewrapped: string): Promise<boolean>;
}

export const WRAPPED_KEY_HOLDER = 'coffer:wrapped-key-holder';

/** Marks a provider as a WrappedKeyHolder: libs/keys discovers it in whichever app loads its module. */
export const HoldsWrappedKeys = () => SetMetadata(WRAPPED_KEY_HOLDER, true);
