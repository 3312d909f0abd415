// CpuBackend's two attention ops: lightning (linear attention with decay, model-spec §5) and
// softmax attention with partial RoPE and GQA over the KV cache (§6).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace mmx::cpu {

std::vector<CpuSeqState*> CpuBackend::batch_states(const StepBatch& batch, const char* op) const {
  std::vector<CpuSeqState*> states;
  std::set<const SeqState*> seen;
  for (const StepSeq& s : batch.seqs) {
    auto* st = dynamic_cast<CpuSeqState*>(s.state);
    MMX_CHECK(st != nullptr, Code::InvalidArgument,
              std::string("cpu backend: ") + op + ": a sequence state that the CPU backend did not create");
    MMX_CHECK(st->s.size() == size_t(config_.layers), Code::InvalidArgument,
              std::string("cpu backend: ") + op + ": a sequence state made for another model");
    MMX_CHECK(seen.insert(st).second, Code::InvalidArgument,
              std::string("cpu backend: ") + op + ": the same sequence appears twice in one step");
    MMX_CHECK(s.n_tokens >= 0 && s.start_pos >= 0, Code::InvalidArgument,
              std::string("cpu backend: ") + op + ": negative token count or position");
    states.push_back(st);
  }
  return states;
}

void CpuBackend::check_layer(int layer, LayerKind kind, const char* op) const {
  require_prepared(op);
  MMX_CHECK(layer >= 0 && layer < config_.layers, Code::InvalidArgument,
            std::string("cpu backend: ") + op + ": layer " + std::to_string(layer) + " out of range");
  MMX_CHECK(config_.layer_kinds[size_t(layer)] == kind, Code::InvalidArgument,
            std::string("cpu backend: ") + op + ": layer " + std::to_string(layer) + " is not a " +
                (kind == LayerKind::Lightning ? "lightning" : "softmax") + " layer");
}

void CpuBackend::lightning_attention(int layer, Act qkv, const StepBatch& batch, Act out) {
  check_layer(layer, LayerKind::Lightning, "lightning_attention");
  const int64_t nh = plan_.heads, d = config_.head_dim, T = batch.total_tokens();
  MMX_CHECK(qkv.rows == T && qkv.cols == 3 * nh * d && out.rows == T && out.cols == nh * d,
            Code::InvalidArgument, "cpu backend: lightning_attention: qkv/out shapes do not fit the step");
  std::vector<CpuSeqState*> states = batch_states(batch, "lightning_attention");
  struct Task {
    int64_t seq, row0, head;
  };
  std::vector<Task> tasks;
  int64_t row0 = 0;
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    auto& S = states[s]->s[size_t(layer)];
    if (S.empty()) S.assign(size_t(nh * d * d), 0.0f);
    for (int64_t h = 0; h < nh; ++h) tasks.push_back({int64_t(s), row0, h});
    row0 += batch.seqs[s].n_tokens;
  }
  const float* in = static_cast<const float*>(qkv.data);
  float* o = static_cast<float*>(out.data);
  const int64_t ld = 3 * nh * d;
  // Per head: the state update and q S are 2*d*d multiply-adds per token, plus the block terms.
  const double flops = double(T) * double(nh) * double(d) * double(2 * d + std::min(T, config_.block_size));
  deal_tasks(int64_t(tasks.size()), flops, [&](int64_t first, int64_t stride) {
    LightningScratch scratch;
    for (size_t t = size_t(first); t < tasks.size(); t += size_t(stride)) {
      const Task& k = tasks[t];
      // Per head the q, k, v rows are interleaved: [q_h | k_h | v_h] at column 3*d*h.
      const float* base = in + k.row0 * ld + 3 * d * k.head;
      float* S = states[size_t(k.seq)]->s[size_t(layer)].data() + k.head * d * d;
      lightning_head(base, base + d, base + 2 * d, ld, batch.seqs[size_t(k.seq)].n_tokens, d,
                     decay_[size_t(layer)][size_t(k.head)], config_.block_size, S,
                     o + k.row0 * nh * d + k.head * d, nh * d, &scratch);
    }
  });
}

void CpuBackend::softmax_attention(int layer, Act q, Act k, Act v, const StepBatch& batch, Act out) {
  check_layer(layer, LayerKind::Softmax, "softmax_attention");
  const int64_t nh = plan_.heads, nkv = plan_.kv_heads, d = config_.head_dim;  // this rank's heads
  const int64_t T = batch.total_tokens(), kvw = nkv * d, group = nh / nkv;
  MMX_CHECK(q.rows == T && q.cols == nh * d && k.rows == T && k.cols == kvw && v.rows == T &&
                v.cols == kvw && out.rows == T && out.cols == nh * d,
            Code::InvalidArgument, "cpu backend: softmax_attention: q/k/v/out shapes do not fit the step");
  std::vector<CpuSeqState*> states = batch_states(batch, "softmax_attention");

  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const int64_t cached = int64_t(states[s]->k[size_t(layer)].size()) / kvw;
    MMX_CHECK(cached == batch.seqs[s].start_pos, Code::InvalidArgument,
              "cpu backend: softmax_attention: layer " + std::to_string(layer) + " cache holds " +
                  std::to_string(cached) + " tokens but the sequence starts at " +
                  std::to_string(batch.seqs[s].start_pos));
  }
  // Grow each cache by its chunk; remember where each token's row and position are.
  std::vector<int64_t> seq_of(static_cast<size_t>(T)), pos_of(static_cast<size_t>(T));
  int64_t row = 0;
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const StepSeq& sq = batch.seqs[s];
    states[s]->k[size_t(layer)].resize(size_t((sq.start_pos + sq.n_tokens) * kvw));
    states[s]->v[size_t(layer)].resize(size_t((sq.start_pos + sq.n_tokens) * kvw));
    for (int64_t i = 0; i < sq.n_tokens; ++i, ++row) {
      seq_of[size_t(row)] = int64_t(s);
      pos_of[size_t(row)] = sq.start_pos + i;
    }
  }

  // RoPE on q (into a copy: the input stays as given) and k (straight into the cache).
  std::vector<float> qr(static_cast<size_t>(T * nh * d));
  const float *qin = static_cast<const float*>(q.data), *kin = static_cast<const float*>(k.data),
              *vin = static_cast<const float*>(v.data);
  for_rows(T, (nh + 2 * nkv) * d, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      CpuSeqState* st = states[size_t(seq_of[size_t(t)])];
      const int64_t pos = pos_of[size_t(t)];
      float* kc = st->k[size_t(layer)].data() + pos * kvw;
      std::memcpy(qr.data() + t * nh * d, qin + t * nh * d, size_t(nh * d) * sizeof(float));
      std::memcpy(kc, kin + t * kvw, size_t(kvw) * sizeof(float));
      std::memcpy(st->v[size_t(layer)].data() + pos * kvw, vin + t * kvw, size_t(kvw) * sizeof(float));
      apply_rope(qr.data() + t * nh * d, nh, d, config_.rotary_dim, pos, inv_freq_);
      apply_rope(kc, nkv, d, config_.rotary_dim, pos, inv_freq_);
    }
  });

  // Causal GQA: token t sees positions 0..pos; KV head g serves query heads g*group..+group-1.
  // Tasks are dealt round-robin so long-context and short-context tokens spread evenly.
  const float scale = float(1.0 / std::sqrt(double(d)));
  float* o = static_cast<float*>(out.data);
  const int64_t tasks = T * nkv;
  double flops = 0;
  for (int64_t t = 0; t < T; ++t) flops += 2.0 * double(pos_of[size_t(t)] + 1) * double(nh * d);
  deal_tasks(tasks, flops, [&](int64_t first, int64_t stride) {
    std::vector<float> scores;
    for (int64_t task = first; task < tasks; task += stride) {
      const int64_t t = task / nkv, g = task % nkv;
      CpuSeqState* st = states[size_t(seq_of[size_t(t)])];
      const int64_t ctx = pos_of[size_t(t)] + 1;
      scores.resize(size_t(group * ctx));
      attend_group(qr.data() + t * nh * d + g * group * d, st->k[size_t(layer)].data() + g * d,
                   st->v[size_t(layer)].data() + g * d, kvw, ctx, group, d, scale, scores.data(),
                   o + t * nh * d + g * group * d);
    }
  });
}

}  // namespace mmx::cpu
