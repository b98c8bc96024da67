// The ShootaWall client library for TypeScript on Node, Deno and Bun. It is written once, as the plain
// ES module the page imports (static/chat-client.js, no build step, types in its JSDoc). tsc reads the
// types from static/chat-client.d.ts, generated from that JSDoc: `node src/client/build-types.mjs`
// (and `--check` to verify it is fresh); `npx tsc -p src/client/tsconfig.json` checks the JS itself.
//
//   import { ChatClient } from "./src/client/index.ts";
//   const chat = new ChatClient({ url: "http://127.0.0.1:8080", room: "lobby", name: "bot" });
//   chat.on("message", (m) => console.log(m.seq, m.user, m.text));
//   chat.connect();
//   await chat.send("hello").acked; // the seq the server gave it
//
// Node 20 has no global WebSocket: pass one, e.g. `new ChatClient({ ..., WebSocket: (await import("ws")).WebSocket })`.

export { ChatClient, ChatClientError, CLOSE } from "../../static/chat-client.js";
export type {
  AckEvent,
  AnnounceFrame,
  ChatClientEvents,
  ChatClientOptions,
  ChatMessage,
  ClientMessage,
  ClientStatus,
  ConnectExtras,
  DisconnectEvent,
  ErrorEvent,
  GapEvent,
  HistoryEvent,
  MessageOrigin,
  OutboxEntry,
  StatusEvent,
  StorageLike,
  Timers,
  WebSocketConstructorLike,
  WebSocketLike,
  WelcomeFrame,
} from "../../static/chat-client.js";
