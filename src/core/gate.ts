// ConnectionGate: caps open connections in all and per client IP, counted from the upgrade on. Portable.

import type { Clock, TimerHandle } from "./deps.ts";

export type Admission =
  | { ok: true; ticket: Ticket }
  | { ok: false; reason: "max_connections" | "max_connections_per_ip" };

/** One admitted connection; release it exactly once when the connection ends (extra calls are ignored). */
export interface Ticket {
  /** The WebSocket opened: keep the slot until release(). */
  opened(): void;
  release(): void;
}

/**
 * A slot is taken when the upgrade is admitted, so a burst of simultaneous
 * upgrades cannot overshoot the limits. A slot whose socket never opens (the
 * client went away mid-handshake) is given back after `pendingMs`.
 */
export class ConnectionGate {
  #total = 0;
  #perIp = new Map<string, number>();
  #max: number;
  #maxPerIp: number;
  #clock: Clock;
  #pendingMs: number;

  constructor(max: number, maxPerIp: number, clock: Clock, pendingMs = 5_000) {
    this.#max = max;
    this.#maxPerIp = maxPerIp;
    this.#clock = clock;
    this.#pendingMs = pendingMs;
  }

  /** Open (or opening) connections in all. */
  get total(): number {
    return this.#total;
  }

  /** Distinct client IPs holding a slot. */
  get ips(): number {
    return this.#perIp.size;
  }

  /** Gives back a slot (GateTicket.release). */
  _free(ip: string, timer: TimerHandle | undefined): void {
    if (timer !== undefined) this.#clock.clearTimeout(timer);
    this.#total--;
    const left = (this.#perIp.get(ip) ?? 1) - 1;
    if (left <= 0) this.#perIp.delete(ip);
    else this.#perIp.set(ip, left);
  }

  /** Cancels a ticket's pending timeout (GateTicket.opened). */
  _opened(timer: TimerHandle | undefined): void {
    if (timer !== undefined) this.#clock.clearTimeout(timer);
  }

  admit(ip: string): Admission {
    if (this.#max > 0 && this.#total >= this.#max) return { ok: false, reason: "max_connections" };
    const held = this.#perIp.get(ip) ?? 0;
    if (this.#maxPerIp > 0 && held >= this.#maxPerIp) return { ok: false, reason: "max_connections_per_ip" };
    this.#total++;
    this.#perIp.set(ip, held + 1);
    const ticket = new GateTicket(this, ip);
    ticket.timer = this.#clock.setTimeout(() => ticket.release(), this.#pendingMs);
    return { ok: true, ticket };
  }
}

/** A slot held by one connection: a few fields, no closures (it lives as long as the connection). */
class GateTicket implements Ticket {
  timer: TimerHandle | undefined;
  #gate: ConnectionGate | undefined;
  #ip: string;

  constructor(gate: ConnectionGate, ip: string) {
    this.#gate = gate;
    this.#ip = ip;
  }

  opened(): void {
    this.#gate?._opened(this.timer);
    this.timer = undefined;
  }

  release(): void {
    const gate = this.#gate;
    if (gate === undefined) return;
    this.#gate = undefined;
    gate._free(this.#ip, this.timer);
    this.timer = undefined;
  }
}
