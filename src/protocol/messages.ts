// Wire contract v1: the frames server and client exchange (see docs/protocol.md). Portable.

/** A client's nonce: a short string or a safe integer, echoed back as sent. */
export type Nonce = string | number;

export interface ChatMessage {
  type: "message";
  room: string;
  seq: number;
  user: string;
  date: string;
  text: string;
  nonce?: Nonce;
}

export interface WelcomeFrame {
  type: "welcome";
  room: string;
  user: string;
  epoch: string;
  seq: number;
  online: string[];
}

export interface HistoryFrame {
  type: "history";
  room: string;
  messages: ChatMessage[];
  /** True when no message of this epoch older than the first one sent exists. */
  complete: boolean;
}

export interface AnnounceFrame {
  type: "announce";
  event: "join" | "leave";
  room: string;
  user: string;
  date: string;
  text: string;
}

export interface AckFrame {
  type: "ack";
  nonce: Nonce;
  seq: number;
}

export type ErrorCode = "bad_request" | "payload_too_large" | "rate_limited" | "unavailable" | "unauthorized";

export interface ErrorFrame {
  type: "error";
  code: ErrorCode;
  message: string;
  /** The nonce of the message this error is about, when it had one (e.g. `unavailable`). */
  nonce?: Nonce;
}

export interface PongFrame {
  type: "pong";
}

/** Answers a client `auth` frame whose fresh token was accepted: the connection now lasts until `exp`. */
export interface AuthOkFrame {
  type: "auth_ok";
  /** The new token's expiry, in seconds since 1970. */
  exp: number;
}

export type ServerFrame =
  | WelcomeFrame
  | HistoryFrame
  | ChatMessage
  | AnnounceFrame
  | AckFrame
  | ErrorFrame
  | PongFrame
  | AuthOkFrame;

export interface ClientChat {
  type: "message";
  text: string;
  nonce?: Nonce;
}

export interface ClientPing {
  type: "ping";
}

/** A fresh token for a connection whose token is about to expire (AUTH=jwt). */
export interface ClientAuth {
  type: "auth";
  token: string;
}

export type ClientFrame = ClientChat | ClientPing | ClientAuth;
