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

export type ErrorCode = "bad_request" | "payload_too_large" | "rate_limited";

export interface ErrorFrame {
  type: "error";
  code: ErrorCode;
  message: string;
}

export interface PongFrame {
  type: "pong";
}

export type ServerFrame =
  | WelcomeFrame
  | HistoryFrame
  | ChatMessage
  | AnnounceFrame
  | AckFrame
  | ErrorFrame
  | PongFrame;

export interface ClientChat {
  type: "message";
  text: string;
  nonce?: Nonce;
}

export interface ClientPing {
  type: "ping";
}

export type ClientFrame = ClientChat | ClientPing;
