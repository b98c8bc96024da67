// The local accounts of AUTH=password: <DATA_DIR>/users.json, written by scripts/users.ts
// (atomically: a temporary file, then rename; mode 0600) and read by the server, which notices
// when the file changes.

import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { checkRoomList } from "./rooms.ts";

export const USERS_FILE = "users.json";

/** Account names: lower case, 1 to 32 of a-z, 0-9, ".", "_" and "-", starting with a letter or digit. */
export const USERNAME = /^[a-z0-9][a-z0-9._-]{0,31}$/;

export interface UserRecord {
  /** From passwords.ts: "pbkdf2-sha256$600000$<salt>$<key>". */
  hash: string;
  /** Rooms this account may join (names or patterns); absent means every room. */
  rooms?: string[];
  created: string;
  updated?: string;
}

export interface UsersData {
  version: 1;
  users: Record<string, UserRecord>;
}

export function usersPath(dataDir: string): string {
  return join(dataDir, USERS_FILE);
}

/** Normalises what someone typed as a user name ("  Alice " -> "alice"). */
export function normaliseUsername(raw: string): string {
  return raw.trim().toLowerCase();
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: string })?.code === "ENOENT" || (err as { name?: string })?.name === "NotFound";
}

/** Parses and checks the file's text; throws with a readable message when it is malformed. */
export function parseUsers(text: string, path = USERS_FILE): UsersData {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not valid JSON`);
  }
  const data = raw as Partial<UsersData>;
  if (typeof raw !== "object" || raw === null || data.version !== 1 || typeof data.users !== "object" || data.users === null) {
    throw new Error(`${path} is not a ShootaWall users file (expected {"version":1,"users":{...}})`);
  }
  const users: Record<string, UserRecord> = Object.create(null);
  for (const [name, rec] of Object.entries(data.users)) {
    if (!USERNAME.test(name)) throw new Error(`${path}: "${name}" is not a valid user name`);
    if (typeof rec?.hash !== "string") throw new Error(`${path}: user "${name}" has no password hash`);
    if (rec.rooms !== undefined && typeof checkRoomList(rec.rooms) === "string") {
      throw new Error(`${path}: user "${name}" has an invalid rooms list`);
    }
    users[name] = rec;
  }
  return { version: 1, users };
}

/** Reads the users file; a missing file is an empty one. */
export async function readUsers(path: string): Promise<UsersData> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if (isNotFound(err)) return { version: 1, users: Object.create(null) };
    throw err;
  }
  return parseUsers(text, path);
}

/** Writes the users file atomically (temporary file in the same directory, then rename), mode 0600. */
export async function writeUsers(path: string, data: UsersData): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const sorted: Record<string, UserRecord> = {};
  for (const name of Object.keys(data.users).sort()) sorted[name] = data.users[name] as UserRecord;
  const tmp = `${path}.${crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16)}.tmp`;
  await writeFile(tmp, `${JSON.stringify({ version: 1, users: sorted }, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  await chmod(tmp, 0o600); // the umask may have taken bits off
  await rename(tmp, path);
}

/**
 * Runs `fn` (a read, change and write of the users file) while holding `<file>.lock`, so that two
 * scripts/users.ts runs at once cannot lose each other's change.
 */
export async function withUsersLock<T>(path: string, fn: () => Promise<T>, waitMs = 10_000): Promise<T> {
  const lock = `${path}.lock`;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await writeFile(lock, "", { flag: "wx", mode: 0o600 });
      break;
    } catch (err) {
      if ((err as { code?: string }).code !== "EEXIST" && (err as { name?: string }).name !== "AlreadyExists") throw err;
      if (Date.now() > deadline) throw new Error(`${lock} is held by another run; delete it if none is running`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

/** The users file as the server sees it: read again whenever its size or modification time changes. */
export class UsersCache {
  readonly path: string;
  #data: UsersData = { version: 1, users: Object.create(null) };
  #stamp = "";

  constructor(path: string) {
    this.path = path;
  }

  async #fresh(): Promise<UsersData> {
    let stamp = "missing";
    try {
      const s = await stat(this.path);
      stamp = `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (stamp !== this.#stamp) {
      this.#data = await readUsers(this.path);
      this.#stamp = stamp;
    }
    return this.#data;
  }

  /** Loads the file now (at start, so that a malformed file stops the server with a message). */
  async load(): Promise<number> {
    return Object.keys((await this.#fresh()).users).length;
  }

  /** The account named `name`, if it exists. A file that became unreadable keeps its last good contents. */
  async get(name: string): Promise<UserRecord | undefined> {
    let data = this.#data;
    try {
      data = await this.#fresh();
    } catch {
      // keep serving the last good copy; scripts/users.ts only ever replaces the file whole
    }
    return Object.hasOwn(data.users, name) ? data.users[name] : undefined;
  }
}
