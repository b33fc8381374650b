// commit_states on host memory: copies intermediate state accepted[n] of
// sequence n into pool row state_indices[n], one contiguous matrix row at a
// time (the last dimension is contiguous in both tensors).
#include <cstring>

#include "cpu/backends.h"

namespace gdn::cpu {

Status run_commit(const CommitCall& c, const CommitArgs& a) {
  const Tensor& src = a.intermediate_states;
  const Tensor& dst = a.pool;
  const int64_t es = static_cast<int64_t>(element_bytes(src.dtype));
  const int64_t rows = src.shape[3], row_bytes = src.shape[4] * es;
  const char* from = static_cast<const char*>(src.data);
  char* to = static_cast<char*>(dst.data);
  for (int64_t n = 0; n < c.N; ++n) {
    const int64_t j = c.slot[static_cast<size_t>(n)], row = c.row[static_cast<size_t>(n)];
    if (j < 0 || row < 0) continue;
    for (int64_t hv = 0; hv < c.HV; ++hv)
      for (int64_t i = 0; i < rows; ++i)
        std::memcpy(
            to + (row * dst.stride[0] + hv * dst.stride[1] + i * dst.stride[2]) * es,
            from + (n * src.stride[0] + j * src.stride[1] + hv * src.stride[2] + i * src.stride[3]) * es,
            static_cast<size_t>(row_bytes));
  }
  return Status::Ok();
}

}  // namespace gdn::cpu
