#pragma once
// The message types fuzz_message chooses from with its first input byte. make_seeds writes each
// seed's selector as the index of its type here, so both use this one table.
#include <array>

#include "network/messages.h"

namespace psgd::fuzz {

inline constexpr std::array kMessageTypes{
    MessageType::kError,     MessageType::kHello,           MessageType::kJob,
    MessageType::kReady,     MessageType::kFinish,          MessageType::kDataOffer,
    MessageType::kDataChunk, MessageType::kAuthHello,       MessageType::kAuthChallenge,
    MessageType::kAuthProof, MessageType::kHeartbeat,       MessageType::kParams,
    MessageType::kGradient,  MessageType::kModelDelta,      MessageType::kAuthOk,
    MessageType::kPeerTable, MessageType::kPeerHello,       MessageType::kPeersUp,
    MessageType::kRingChunk, MessageType::kAllreduceReport, MessageType::kPeerGradient,
    MessageType::kCcdcCoded, MessageType::kCcdcSlice,       MessageType::kShmOffer,
    MessageType::kShmReply,  MessageType::kShmFrame};

}  // namespace psgd::fuzz
