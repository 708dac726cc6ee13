/**
 * What the session tells the application, drained with `pollEvent` in the
 * order things happened.
 *
 * @module
 */

import type { ProtocolError } from "../proto/errors.js";
import type {
  ConnAckFrame,
  ConvMsgsFrame,
  ConvPageFrame,
  InboxMessage,
  RoomMessage,
  SendAckFrame,
  PresenceFrame,
  SubAckFrame,
  WatchAckFrame,
} from "../proto/frames.js";

/**
 * Why a send was given up: the gateway refused it (`forbidden`), its id was
 * used before for a different message (`conflict`), or it can never fit in
 * a frame (`too-large`).
 */
export type SendFailure = "forbidden" | "conflict" | "too-large";

/** An event of the session. */
export type SessionEvent =
  /** CONNACK arrived: the session is open and replay starts. */
  | { readonly type: "connected"; readonly connack: ConnAckFrame }
  /**
   * The next inbox message: in sequence order, exactly once per sequence
   * (sequences that are gone in between come as a `lost` event before it).
   * `echo` messages are this device's own sends (no payload).
   */
  | { readonly type: "message"; readonly message: InboxMessage }
  /**
   * Inbox sequences `first..=last` are gone and will never be delivered:
   * removed by the gateway's retention before this device fetched them, or
   * lost by the gateway to a damaged disk (PROTOCOL.md §7, "Gone
   * sequences"). Reported once, in order between the messages around them;
   * `delivered` moves past them.
   */
  | { readonly type: "lost"; readonly first: bigint; readonly last: bigint }
  /** A QoS 0 message (sequence 0; may be lost, never repeated). */
  | { readonly type: "ephemeral"; readonly message: InboxMessage }
  /** A page of older history (SYNC Before): not part of the live stream, acknowledges nothing. */
  | { readonly type: "older"; readonly items: readonly InboxMessage[]; readonly end: boolean }
  /** Replay finished: the session is live (new messages are pushed). */
  | { readonly type: "caught-up" }
  /** A QoS 1/2 send is stored (`Stored` or `Duplicate`). QoS 1 is finished; QoS 2 goes on with REL. */
  | { readonly type: "send-acked"; readonly ack: SendAckFrame }
  /** A QoS 2 send is released (COMP): finished. */
  | { readonly type: "send-completed"; readonly clientMsgId: bigint }
  /** A send was given up for good. */
  | {
      readonly type: "send-failed";
      readonly clientMsgId: bigint;
      readonly reason: SendFailure;
      readonly ack?: SendAckFrame | undefined;
    }
  /** The gateway sent ERROR (it closes afterwards, except for BadSyncRequest). */
  | { readonly type: "gateway-error"; readonly code: number; readonly message: string }
  /** The gateway's bytes broke the protocol; the connection is dropped. */
  | { readonly type: "protocol-error"; readonly error: ProtocolError }
  /**
   * The connection is over: close the transport. `reason` is a wire code
   * (DISCONNECT reason, ERROR code, or IdleTimeout when this side gave up
   * waiting); `redirect` is where to reconnect (`host:port`) or empty.
   */
  | {
      readonly type: "disconnected";
      readonly reason: number;
      readonly redirect: string;
      /** True when the gateway said so (DISCONNECT or ERROR), false when this side decided. */
      readonly byGateway: boolean;
    }
  /** A SUBACK arrived (result Ok, Gap or Refused; Forbidden comes as `room-forbidden`). */
  | { readonly type: "subscribed"; readonly ack: SubAckFrame }
  /** A room message: in room order, each sequence once (seq 0: a QoS 0 publish). */
  | { readonly type: "room-message"; readonly message: RoomMessage }
  /** Room sequences `from..=to` are gone for this subscriber (SUBACK Gap: past the room's history). */
  | { readonly type: "room-gap"; readonly room: bigint; readonly from: bigint; readonly to: bigint }
  /** The gateway dropped the subscription as too slow; the session re-subscribed after its last message. */
  | { readonly type: "room-lagged"; readonly room: bigint }
  /**
   * The room does not allow this user to read it (SUBACK Forbidden): the
   * subscription was refused, or ended because the permission was taken
   * away (docs/PROTOCOL.md §6b). The room is no longer followed; `last` is
   * the last sequence delivered from it, for `resume` once it is allowed
   * again.
   */
  | { readonly type: "room-forbidden"; readonly room: bigint; readonly last: bigint | undefined }
  /** A page of conversation summaries ({@link Session.listConversations}, PROTOCOL.md §7a). */
  | { readonly type: "conversations"; readonly page: ConvPageFrame }
  /** A page of one conversation ({@link Session.fetchConversation}). */
  | { readonly type: "conversation-page"; readonly page: ConvMsgsFrame }
  /** The answer to a WATCH: `code` 0, or its refusal (Forbidden, TooManyWatches; none of its users is watched). */
  | { readonly type: "watched"; readonly ack: WatchAckFrame }
  /** A watched user's online devices (all of them; empty: offline). */
  | { readonly type: "presence"; readonly presence: PresenceFrame };

/** The `type` names of {@link SessionEvent}. */
export type SessionEventType = SessionEvent["type"];
