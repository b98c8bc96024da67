import { describe } from "node:test";
import { MemoryStore } from "../../src/storage/memory.ts";
import { storeContract } from "./contract.ts";

describe("MemoryStore", () => {
  storeContract({ makeStore: () => new MemoryStore(), durable: false, retain: 5 });
});
