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
 * client went away mid-handshake) is given back after `pendingMs`. One timer
 * serves every pending slot (armed for the oldest), not one timer per upgrade.
 */
export class ConnectionGate {
  #total = 0;
  #perIp = new Map<string, number>();
  #max: number;
  #maxPerIp: number;
  #clock: Clock;
  #pendingMs: number;
  /** Admitted, not yet opened nor released; insertion order is deadline order. */
  #pending = new Set<GateTicket>();
  #timer: TimerHandle | undefined;

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
  _free(ticket: GateTicket, ip: string): void {
    this.#pending.delete(ticket);
    this.#total--;
    const left = (this.#perIp.get(ip) ?? 1) - 1;
    if (left <= 0) this.#perIp.delete(ip);
    else this.#perIp.set(ip, left);
  }

  /** The ticket's socket opened: it keeps its slot until released (GateTicket.opened). */
  _opened(ticket: GateTicket): void {
    this.#pending.delete(ticket);
  }

  admit(ip: string): Admission {
    if (this.#max > 0 && this.#total >= this.#max) return { ok: false, reason: "max_connections" };
    const held = this.#perIp.get(ip) ?? 0;
    if (this.#maxPerIp > 0 && held >= this.#maxPerIp) return { ok: false, reason: "max_connections_per_ip" };
    this.#total++;
    this.#perIp.set(ip, held + 1);
    const ticket = new GateTicket(this, ip, this.#clock.now() + this.#pendingMs);
    this.#pending.add(ticket);
    if (this.#timer === undefined) this.#arm(this.#pendingMs);
    return { ok: true, ticket };
  }

  #arm(ms: number): void {
    this.#timer = this.#clock.setTimeout(() => this.#expire(), ms);
  }

  /** Releases the pending slots whose time is up, then waits for the next oldest. */
  #expire(): void {
    this.#timer = undefined;
    const now = this.#clock.now();
    for (const ticket of this.#pending) {
      if (ticket.deadline > now) return this.#arm(ticket.deadline - now);
      ticket.release();
    }
  }
}

/** A slot held by one connection: a few fields, no closures (it lives as long as the connection). */
class GateTicket implements Ticket {
  readonly deadline: number;
  #gate: ConnectionGate | undefined;
  #ip: string;

  constructor(gate: ConnectionGate, ip: string, deadline: number) {
    this.#gate = gate;
    this.#ip = ip;
    this.deadline = deadline;
  }

  opened(): void {
    this.#gate?._opened(this);
  }

  release(): void {
    const gate = this.#gate;
    if (gate === undefined) return;
    this.#gate = undefined;
    gate._free(this, this.#ip);
  }
}
