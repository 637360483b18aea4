import { createHash } from 'node:crypto';

/** One condition, named like a Prometheus alert: `CertificateRenewalFailing`. */
export interface Alert {
  name: string;
  /** What distinguishes this instance of the alert (a certificate id, an org): deduplication key. */
  labels: Record<string, string>;
  severity: 'critical' | 'warning' | 'info';
  summary: string;
  description?: string;
  /** When the condition began (the caller's clock). */
  startsAt: Date;
}

/** The Alertmanager webhook body (version 4), so receivers written for Alertmanager work unchanged. */
export interface AlertWebhookBody {
  version: '4';
  groupKey: string;
  status: 'firing' | 'resolved';
  receiver: 'coffer';
  groupLabels: Record<string, string>;
  commonLabels: Record<string, string>;
  commonAnnotations: Record<string, string>;
  externalURL: string;
  alerts: {
    status: 'firing' | 'resolved';
    labels: Record<string, string>;
    annotations: Record<string, string>;
    startsAt: string;
    endsAt: string;
    generatorURL: string;
    fingerprint: string;
  }[];
}

/** Alertmanager's "no end yet". */
const NO_END = '0001-01-01T00:00:00Z';

/** Stable per alert instance: the name and the labels, sorted. */
export function alertFingerprint(alert: Pick<Alert, 'name' | 'labels'>): string {
  const labels = Object.entries(alert.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256').update(JSON.stringify([alert.name, labels])).digest('hex').slice(0, 16);
}

export function webhookBody(status: 'firing' | 'resolved', alert: Alert, fingerprint: string, endsAt?: Date): AlertWebhookBody {
  const labels = { alertname: alert.name, severity: alert.severity, ...alert.labels };
  const annotations = { summary: alert.summary, ...(alert.description && { description: alert.description }) };
  return {
    version: '4',
    groupKey: `coffer:${fingerprint}`,
    status,
    receiver: 'coffer',
    groupLabels: { alertname: alert.name },
    commonLabels: labels,
    commonAnnotations: annotations,
    externalURL: '',
    alerts: [
      {
        status,
        labels,
        annotations,
        startsAt: alert.startsAt.toISOString(),
        endsAt: status === 'resolved' && endsAt ? endsAt.toISOString() : NO_END,
        generatorURL: '',
        fingerprint,
      },
    ],
  };
}
