// Manages the local accounts of AUTH=password: <DATA_DIR>/users.json (default ./data/users.json).
//
//   npx tsx scripts/users.ts add NAME [--rooms "lobby,team-*"]   asks for the password
//   npx tsx scripts/users.ts passwd NAME                          asks for the new password
//   npx tsx scripts/users.ts remove NAME
//   npx tsx scripts/users.ts list
//   options: --data-dir DIR (else $DATA_DIR, else ./data)
//
// The password is read from the terminal without echo (twice), or as the first line of stdin when
// it is not a terminal; never from the command line. Hashes: PBKDF2-HMAC-SHA256, 600,000
// iterations, 16-byte random salt (src/http/auth/passwords.ts). The file is replaced atomically
// (temporary file + rename) with mode 0600; a running server picks the change up at the next sign-in.
// Runs on Node (tsx), Deno and Bun alike.

import { checkNewPassword, hashPassword, PBKDF2_ITERATIONS } from "../src/http/auth/passwords.ts";
import { parseRoomList } from "../src/http/auth/rooms.ts";
import { normaliseUsername, readUsers, USERNAME, usersPath, withUsersLock, writeUsers } from "../src/http/auth/users-file.ts";

const USAGE = `Usage: users.ts add NAME [--rooms "lobby,team-*"] | passwd NAME | remove NAME | list   [--data-dir DIR]
User names: lower case, 1 to 32 of a-z, 0-9, ".", "_" and "-". Passwords: 8 to 1024 characters.`;

function fail(message: string, code = 2): never {
  console.error(`users: ${message}`);
  process.exit(code);
}

/** Reads one line from a terminal without echoing it. */
function askHidden(prompt: string): Promise<string> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding("utf8");
    let value = "";
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off("data", onData);
          process.stderr.write("\n");
          resolve(value);
          return;
        }
        if (ch === "\u0003") {
          stdin.setRawMode(false);
          process.stderr.write("\n");
          process.exit(130);
        }
        if (ch === "\u007f" || ch === "\b") value = [...value].slice(0, -1).join("");
        else value += ch;
      }
    };
    stdin.on("data", onData);
  });
}

/** The first line of a non-terminal stdin. */
async function readFirstLine(): Promise<string> {
  let text = "";
  for await (const chunk of process.stdin) {
    text += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk as Uint8Array);
    if (text.includes("\n")) break;
  }
  return text.split(/\r?\n/)[0] ?? "";
}

async function newPassword(): Promise<string> {
  let password: string;
  if (process.stdin.isTTY) {
    password = await askHidden("Password: ");
    const again = await askHidden("Password again: ");
    if (again !== password) fail("the passwords differ; nothing changed");
  } else {
    password = await readFirstLine();
  }
  const problem = checkNewPassword(password);
  if (problem) fail(`${problem}; nothing changed`);
  return password;
}

async function main(argv: string[]): Promise<void> {
  const args: string[] = [];
  let dataDir = process.env.DATA_DIR || "./data";
  let rooms: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    if (flag === "--help" || flag === "-h") return void console.log(USAGE);
    if (flag === "--data-dir" || flag === "--rooms") {
      const value = inline ?? argv[++i];
      if (value === undefined) fail(`${flag} needs a value\n${USAGE}`);
      if (flag === "--data-dir") dataDir = value;
      else {
        const parsed = parseRoomList(value);
        if (typeof parsed === "string") fail(`--rooms: ${parsed}`);
        rooms = [...parsed];
      }
    } else if (arg.startsWith("--")) fail(`unknown option ${arg}\n${USAGE}`);
    else args.push(arg);
  }
  const [command, rawName] = args;
  const path = usersPath(dataDir);
  if (command === "list") {
    let data;
    try {
      data = await readUsers(path);
    } catch (err) {
      fail((err as Error).message);
    }
    const names = Object.keys(data.users).sort();
    if (names.length === 0) console.log(`(no users in ${path})`);
    for (const name of names) {
      const rec = data.users[name]!;
      console.log(`${name}\trooms: ${rec.rooms?.join(",") ?? "*"}\tcreated ${rec.created}${rec.updated ? `, password changed ${rec.updated}` : ""}`);
    }
    return;
  }
  if (command !== "add" && command !== "remove" && command !== "passwd") fail(USAGE);
  if (rawName === undefined || args.length > 2) fail(USAGE);
  const name = normaliseUsername(rawName);
  if (!USERNAME.test(name)) fail(`"${rawName}" is not a valid user name: 1 to 32 of a-z, 0-9, ".", "_" and "-"`);
  try {
    // Checked again under the lock; this spares someone typing a password for nothing.
    const exists = Object.hasOwn((await readUsers(path)).users, name);
    if (command === "add" && exists) fail(`${name} already exists (use passwd to change the password)`);
    if (command !== "add" && !exists) fail(`no user ${name}`);
  } catch (err) {
    fail((err as Error).message);
  }
  // Ask for the password before taking the lock: a person may take a while to type it.
  const password = command === "remove" ? "" : await newPassword();
  try {
    await withUsersLock(path, () => change(path, command, name, password, rooms));
  } catch (err) {
    fail((err as Error).message);
  }
  const what = command === "add" ? "added" : command === "passwd" ? "password changed for" : "removed";
  console.error(`users: ${what} ${name} in ${path}${command === "remove" ? "" : ` (PBKDF2-SHA256, ${PBKDF2_ITERATIONS} iterations)`}`);
}

/** Reads, changes and writes the users file (under its lock). */
async function change(path: string, command: "add" | "passwd" | "remove", name: string, password: string, rooms?: string[]): Promise<void> {
  const data = await readUsers(path);
  const exists = Object.hasOwn(data.users, name);
  const now = new Date().toISOString();
  if (command === "add") {
    if (exists) throw new Error(`${name} already exists (use passwd to change the password)`);
    data.users[name] = { hash: await hashPassword(password), ...(rooms ? { rooms } : {}), created: now };
  } else if (command === "passwd") {
    if (!exists) throw new Error(`no user ${name}`);
    const rec = data.users[name]!;
    data.users[name] = { ...rec, hash: await hashPassword(password), ...(rooms ? { rooms } : {}), updated: now };
  } else {
    if (!exists) throw new Error(`no user ${name}`);
    delete data.users[name];
  }
  await writeUsers(path, data);
}

await main(process.argv.slice(2));
