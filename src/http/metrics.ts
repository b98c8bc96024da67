// Renders the server's counters in the Prometheus text exposition format (version 0.0.4).

import type { ConnectionGate } from "../core/gate.ts";
import type { Histogram, Metrics } from "../core/metrics.ts";
import type { RoomRegistry } from "../core/rooms.ts";

export interface MetricsSources {
  metrics: Metrics;
  rooms: RoomRegistry;
  gate: ConnectionGate;
  runtime: string;
}

const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");

function family(out: string[], name: string, type: string, help: string): void {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
}

function labelled(out: string[], name: string, label: string, map: Map<string, number>, known: string[]): void {
  const keys = new Set([...known, ...map.keys()]);
  for (const k of keys) out.push(`${name}{${label}="${esc(k)}"} ${map.get(k) ?? 0}`);
}

function histogram(out: string[], name: string, h: Histogram): void {
  let cumulative = 0;
  h.bounds.forEach((b, i) => {
    cumulative += h.counts[i] as number;
    out.push(`${name}_bucket{le="${b}"} ${cumulative}`);
  });
  out.push(`${name}_bucket{le="+Inf"} ${h.count}`, `${name}_sum ${h.sum}`, `${name}_count ${h.count}`);
}

export function renderMetrics({ metrics: m, rooms, gate, runtime }: MetricsSources): string {
  const out: string[] = [];
  family(out, "shootawall_info", "gauge", "Build and runtime information.");
  out.push(`shootawall_info{runtime="${esc(runtime)}"} 1`);
  family(out, "shootawall_connections", "gauge", "Open WebSocket connections in rooms.");
  out.push(`shootawall_connections ${rooms.connectionCount}`);
  family(out, "shootawall_connection_slots", "gauge", "Connections admitted, including upgrades in progress.");
  out.push(`shootawall_connection_slots ${gate.total}`);
  family(out, "shootawall_rooms", "gauge", "Rooms held in memory.");
  out.push(`shootawall_rooms ${rooms.size}`);
  const store = rooms.storeHealth();
  family(out, "shootawall_store_up", "gauge", "1 when the store is reachable, 0 while degraded (Redis away).");
  out.push(`shootawall_store_up{store="${esc(store.kind)}"} ${store.ok ? 1 : 0}`);
  family(out, "shootawall_frames_received_total", "counter", "Frames received from clients.");
  out.push(`shootawall_frames_received_total ${m.framesIn}`);
  family(out, "shootawall_messages_received_total", "counter", "Chat messages accepted and broadcast.");
  out.push(`shootawall_messages_received_total ${m.messagesIn}`);
  family(out, "shootawall_frames_sent_total", "counter", "Frames handed to sockets.");
  out.push(`shootawall_frames_sent_total ${m.framesOut}`);
  family(out, "shootawall_bytes_sent_total", "counter", "Bytes handed to sockets.");
  out.push(`shootawall_bytes_sent_total ${m.bytesOut}`);
  family(out, "shootawall_errors_sent_total", "counter", "Error frames sent, by code.");
  labelled(out, "shootawall_errors_sent_total", "code", m.errors, ["bad_request", "payload_too_large", "rate_limited", "unavailable"]);
  family(out, "shootawall_closes_total", "counter", "Connections closed, by reason.");
  labelled(out, "shootawall_closes_total", "reason", m.closes, [
    "client", "heartbeat", "slow_consumer", "rate_limit", "too_big", "send_failed", "error", "shutdown",
    "token_expired", "logged_out", "reset",
  ]);
  family(out, "shootawall_rejected_upgrades_total", "counter", "Upgrades refused before the WebSocket existed, by reason.");
  labelled(out, "shootawall_rejected_upgrades_total", "reason", m.rejectedUpgrades, [
    "bad_room", "bad_name", "bad_resume", "bad_handshake", "max_connections", "max_connections_per_ip", "max_rooms",
    "store_unavailable",
    "bad_origin", "bad_protocol", "no_credentials", "bad_credentials", "bad_token", "bad_ticket", "bad_session", "room_forbidden",
  ]);
  family(out, "shootawall_broadcast_fanout_seconds", "histogram", "Time to hand one broadcast to every socket of a room.");
  histogram(out, "shootawall_broadcast_fanout_seconds", m.fanout);
  return `${out.join("\n")}\n`;
}
