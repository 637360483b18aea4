import { Injectable } from '@nestjs/common';

/**
 * ACME HTTP-01 key authorizations by token, written by the ACME client while an order is
 * pending and read by the plain-HTTP listener. In memory: the process that orders is the one
 * answering, as long as a load balancer sends port 80 of every replica's name to it.
 */
@Injectable()
export class ChallengeStore {
  private readonly tokens = new Map<string, string>();

  set(token: string, keyAuthorization: string): void {
    this.tokens.set(token, keyAuthorization);
  }

  get(token: string): string | undefined {
    return this.tokens.get(token);
  }

  delete(token: string): void {
    this.tokens.delete(token);
  }
}
