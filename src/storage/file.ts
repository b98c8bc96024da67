// Append-only log per room in DATA_DIR, with torn-line recovery, fsync policy and compaction.
// Uses node:fs/promises only, which Node, Deno and Bun all provide unchanged.

import { mkdir, open, readFile, rename, rm, truncate, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../core/deps.ts";
import type { ChatMessage } from "../protocol/messages.ts";
import { type RoomLog, type Store, type StoredRoom, StoreUnavailableError } from "./store.ts";

export type FsyncPolicy = "always" | "interval";

export interface FileStoreOptions {
  dir: string;
  /** `always`: acked only once on disk; `interval`: written at once, synced within `intervalMs`. */
  fsync: FsyncPolicy;
  /** Messages a room keeps; the log is compacted back to this many when it holds twice as many. */
  retain: number;
  intervalMs?: number;
  /** Log files kept open at once (each room's is opened on its first write). */
  maxOpenFiles?: number;
  log: Logger;
}

interface Header {
  v: 1;
  epoch: string;
  /** The seq before the first message line (non-zero after compaction). */
  base: number;
}

const encoder = new TextEncoder();

/** Parses a log's text: header, good messages, and the byte length up to the last good line. */
export function parseLog(text: string): { header: Header; messages: ChatMessage[]; goodBytes: number; skipped: number } | undefined {
  let offset = 0;
  let header: Header | undefined;
  const messages: ChatMessage[] = [];
  let goodBytes = 0;
  let skipped = 0;
  while (offset < text.length) {
    const end = text.indexOf("\n", offset);
    // A last line without its newline was torn by a crash mid-write: it is not kept.
    if (end === -1) {
      skipped++;
      break;
    }
    const line = text.slice(offset, end);
    offset = end + 1;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      skipped++;
      continue;
    }
    if (!header) {
      const h = value as Partial<Header>;
      if (h?.v !== 1 || typeof h.epoch !== "string" || !Number.isSafeInteger(h.base)) return undefined;
      header = h as Header;
    } else {
      const m = value as ChatMessage;
      const last = messages.at(-1)?.seq ?? header.base;
      if (m?.type !== "message" || m.seq !== last + 1) {
        skipped++;
        continue;
      }
      messages.push(m);
    }
    goodBytes = encoder.encode(text.slice(0, offset)).byteLength;
  }
  return header ? { header, messages, goodBytes, skipped } : undefined;
}

/**
 * Keeps at most `max` log files open: each room's handle is opened on its
 * first write and the least recently written one is closed past the cap, so
 * 10,000 rooms do not need 10,000 file descriptors.
 */
class HandlePool {
  #open = new Set<FileRoomLog>();
  constructor(readonly max: number) {}

  touch(log: FileRoomLog): void {
    this.#open.delete(log);
    this.#open.add(log);
    for (const oldest of this.#open) {
      if (this.#open.size <= this.max) break;
      this.#open.delete(oldest);
      oldest.release();
    }
  }

  forget(log: FileRoomLog): void {
    this.#open.delete(log);
  }
}

class FileRoomLog implements RoomLog {
  #fh: FileHandle | undefined;
  #size: number;
  #lines: number;
  #syncTimer: ReturnType<typeof setTimeout> | undefined;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(
    readonly path: string,
    size: number,
    lines: number,
    readonly header: Header,
    readonly opts: FileStoreOptions,
    readonly pool: HandlePool,
  ) {
    this.#size = size;
    this.#lines = lines;
  }

  async #handle(): Promise<FileHandle> {
    this.pool.touch(this);
    this.#fh ??= await open(this.path, "r+");
    return this.#fh;
  }

  /** Closes the file handle after what is queued (the pool needs the descriptor back). */
  release(): void {
    this.#chain = this.#chain.then(() => this.#closeHandle());
  }

  async #closeHandle(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    if (!fh) return;
    if (this.#syncTimer !== undefined) {
      clearTimeout(this.#syncTimer);
      this.#syncTimer = undefined;
    }
    await fh.datasync().catch(() => {});
    await fh.close().catch(() => {});
  }

  append(messages: ChatMessage[]): Promise<void> {
    const run = this.#chain.then(() => this.#append(messages));
    this.#chain = run.catch(() => {});
    return run;
  }

  async #append(messages: ChatMessage[]): Promise<void> {
    if (this.#closed) throw new StoreUnavailableError("Cannot store message: the log is closed");
    const bytes = encoder.encode(messages.map((m) => `${JSON.stringify(m)}\n`).join(""));
    let fh: FileHandle | undefined;
    try {
      fh = await this.#handle();
      let written = 0;
      while (written < bytes.byteLength) {
        const r = await fh.write(bytes, written, bytes.byteLength - written, this.#size + written);
        written += r.bytesWritten;
      }
      if (this.opts.fsync === "always") await fh.datasync();
      else this.#scheduleSync();
    } catch (err) {
      // Nothing of this batch may survive: cut the file back to its last good length, and let
      // the next append open the path afresh (the disk may be fixed, or the file replaced).
      await fh?.truncate(this.#size).catch(() => {});
      await this.#closeHandle();
      this.opts.log.error("store_write_failed", { path: this.path, error: String(err) });
      throw new StoreUnavailableError(`Cannot store message: ${(err as Error).message}`);
    }
    this.#size += bytes.byteLength;
    this.#lines += messages.length;
    if (this.#lines > 2 * this.opts.retain + 16) await this.#compact().catch((err) => {
      this.opts.log.warn("store_compaction_failed", { path: this.path, error: String(err) });
    });
  }

  #scheduleSync(): void {
    if (this.#syncTimer !== undefined) return;
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined;
      this.#chain = this.#chain.then(() => this.#fh?.datasync()).catch((err) => {
        this.opts.log.error("store_sync_failed", { path: this.path, error: String(err) });
      });
    }, this.opts.intervalMs ?? 1000);
  }

  /** Rewrites the log with only the last `retain` messages (read back, temp file, sync, rename). */
  async #compact(): Promise<void> {
    const current = parseLog(await readFile(this.path, "utf8"));
    if (!current) throw new Error("log header unreadable");
    const keep = current.messages.slice(-this.opts.retain);
    const base = (keep[0]?.seq ?? this.header.base + 1) - 1;
    const header: Header = { v: 1, epoch: this.header.epoch, base };
    const text = [header, ...keep].map((x) => `${JSON.stringify(x)}\n`).join("");
    const tmp = `${this.path}.tmp`;
    const fh = await open(tmp, "w", 0o600);
    try {
      await fh.writeFile(text);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
    // The old handle points at the replaced file: the next write opens the new one.
    await this.#fh?.close().catch(() => {});
    this.#fh = undefined;
    this.#size = encoder.encode(text).byteLength;
    this.#lines = keep.length + 1;
    this.opts.log.debug("store_compacted", { path: this.path, kept: keep.length });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#chain;
    await this.#closeHandle();
    this.pool.forget(this);
  }
}

/** The default store: `<dir>/rooms/<room>.jsonl`, one JSON line per message after a header line. */
export class FileStore implements Store {
  readonly kind = "file";
  #opts: FileStoreOptions;
  #logs = new Set<FileRoomLog>();
  #pool: HandlePool;

  constructor(opts: FileStoreOptions) {
    this.#opts = opts;
    this.#pool = new HandlePool(opts.maxOpenFiles ?? 256);
  }

  async open(room: string, newEpoch: () => string): Promise<{ state: StoredRoom; log: RoomLog }> {
    const dir = join(this.#opts.dir, "rooms");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `${room}.jsonl`);
    let text: string | undefined;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as { code?: string }).code !== "ENOENT") throw err;
    }
    const parsed = text === undefined ? undefined : parseLog(text);
    let header: Header;
    let messages: ChatMessage[];
    let size: number;
    if (parsed) {
      ({ header, messages } = parsed);
      size = parsed.goodBytes;
      if (parsed.skipped > 0) {
        this.#opts.log.warn("store_recovered", { room, skipped_lines: parsed.skipped });
        // Drop the torn tail so that new lines follow the last good one.
        await truncate(path, size);
      }
    } else {
      if (text !== undefined) {
        // Unreadable header: the history is lost; keep the old file aside and start a new epoch.
        const aside = `${path}.corrupt-${Date.now()}`;
        await rename(path, aside);
        this.#opts.log.error("store_corrupt", { room, moved_to: aside });
      }
      header = { v: 1, epoch: newEpoch(), base: 0 };
      messages = [];
      const tmp = `${path}.tmp`;
      await rm(tmp, { force: true });
      const init = `${JSON.stringify(header)}\n`;
      const t = await open(tmp, "w", 0o600);
      try {
        await t.writeFile(init);
        await t.datasync();
      } finally {
        await t.close();
      }
      await rename(tmp, path);
      size = encoder.encode(init).byteLength;
    }
    const log = new FileRoomLog(path, size, messages.length + 1, header, this.#opts, this.#pool);
    this.#logs.add(log);
    const seq = messages.at(-1)?.seq ?? header.base;
    return {
      state: { epoch: header.epoch, seq, messages: messages.slice(-this.#opts.retain) },
      log: {
        append: (batch) => log.append(batch),
        close: async () => {
          this.#logs.delete(log);
          await log.close();
        },
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#logs].map((l) => l.close()));
    this.#logs.clear();
  }
}
