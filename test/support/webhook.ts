import { createServer } from 'node:http';
import type { AlertWebhookBody } from '@coffer/alerts';

export interface WebhookReceiver {
  url: string;
  /** The JSON bodies POSTed so far, with when each arrived. */
  received: (AlertWebhookBody & { receivedAt: Date })[];
  /** What the receiver answers (204 unless a test makes it fail). */
  status: number;
  close(): Promise<void>;
}

/** A real HTTP server standing for the operator's alert receiver (ALERT_WEBHOOK_URLS). */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: WebhookReceiver['received'] = [];
  let receiver: WebhookReceiver;
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (c) => (body += c));
    request.on('end', () => {
      if (request.method === 'POST' && request.headers['content-type'] === 'application/json') {
        received.push({ ...JSON.parse(body), receivedAt: new Date() });
      }
      response.writeHead(receiver.status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver = {
    status: 204,
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/alerts`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  return receiver;
}
