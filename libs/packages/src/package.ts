/** A committed version as the API shows it. */
export interface PackageVersion {
  id: string;
  package: string;
  version: number;
  size: number;
  sha256: string;
  contentType: string;
  kmsKeyVersion: number;
  createdBy: string;
  createdAt: Date;
}

/** An upload accepted while the KMS was unavailable (202): stored, invisible until flushed. */
export interface QueuedVersion extends Omit<PackageVersion, 'version' | 'kmsKeyVersion'> {
  pendingWriteId: string;
  status: 'pending' | 'flushed' | 'failed';
}

export interface PackageSummary {
  name: string;
  latestVersion: number | null;
  versions: number;
  createdBy: string;
  createdAt: Date;
}

/** What reading a version's content needs; never shown. */
export interface StoredVersion extends PackageVersion {
  wrappedDek: string;
  manifestKey: string;
}

export const PACKAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
