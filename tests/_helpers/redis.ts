// A real redis-server for tests: startRedis({ durable?, port?, dir? }) on a free loopback port in a fresh
// temporary folder; stop() / kill9() / restart() / cli("DBSIZE"). The launcher lives in
// scripts/lib/redis-server.ts so that scripts/cluster.ts can use it too.

export {
  encodeCommand,
  formatReply,
  freePort,
  parseReply,
  redisCommand,
  RespError,
  type RespValue,
  type RedisOptions,
  type RunningRedis,
  startRedis,
} from "../../scripts/lib/redis-server.ts";
