// DeviceCodec (codec constants on the device), GPU cache storage, workspace and device queries.
#include "internal.cuh"
#include "turboquant/codec/codebook.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tq::cuda {
namespace {

float* upload(const std::vector<float>& host) {
  if (host.empty()) return nullptr;
  float* dev = nullptr;
  TQ_CUDA_CHECK(cudaMalloc(&dev, host.size() * sizeof(float)));
  TQ_CUDA_CHECK(cudaMemcpy(dev, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  return dev;
}

std::vector<float> transpose(const std::vector<float>& m, int d) {
  std::vector<float> t(m.size());
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j)
      t[static_cast<std::size_t>(j) * d + i] = m[static_cast<std::size_t>(i) * d + j];
  return t;
}

}  // namespace

bool device_available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return count > 0;
}

std::string device_name() {
  cudaDeviceProp prop{};
  TQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  return prop.name;
}

int device_sm_count() {
  int device = 0, sms = 0;
  TQ_CUDA_CHECK(cudaGetDevice(&device));
  TQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

DeviceMemory device_memory() {
  DeviceMemory m;
  TQ_CUDA_CHECK(cudaMemGetInfo(&m.free, &m.total));
  return m;
}

double copy_bandwidth(std::size_t bytes) {
  void* src = nullptr;
  void* dst = nullptr;
  TQ_CUDA_CHECK(cudaMalloc(&src, bytes));
  const cudaError_t second = cudaMalloc(&dst, bytes);
  if (second != cudaSuccess) cudaFree(src);
  TQ_CUDA_CHECK(second);
  cudaEvent_t start = nullptr, stop = nullptr;
  std::vector<float> ms;
  try {
    TQ_CUDA_CHECK(cudaMemset(src, 1, bytes));
    TQ_CUDA_CHECK(cudaEventCreate(&start));
    TQ_CUDA_CHECK(cudaEventCreate(&stop));
    for (int rep = 0; rep < 6; ++rep) {
      TQ_CUDA_CHECK(cudaEventRecord(start));
      TQ_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
      TQ_CUDA_CHECK(cudaEventRecord(stop));
      TQ_CUDA_CHECK(cudaEventSynchronize(stop));
      float t = 0.0f;
      TQ_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
      if (rep > 0) ms.push_back(t);  // the first is the warm-up
    }
  } catch (...) {
    cudaFree(src);
    cudaFree(dst);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    throw;
  }
  cudaFree(src);
  cudaFree(dst);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return 2.0 * static_cast<double>(bytes) / (ms[ms.size() / 2] * 1e-3);
}

DeviceCodec::Impl::~Impl() {
  // Destructors must not throw: free errors are ignored here.
  for (float* p : {pi, pi_t, signs, qjl, qjl_t, cent_hi, cent_lo, thr_hi, thr_lo}) {
    if (p) cudaFree(p);
  }
}

DeviceCodec::DeviceCodec(const CodecSpec& spec) : impl_(std::make_unique<Impl>(spec)) {
  Impl& d = *impl_;
  const Codec& c = d.codec;
  d.dim = spec.dim;
  d.hadamard = spec.rotation == RotationKind::Hadamard;
  d.prod = spec.kind == CodecKind::Prod;
  const std::vector<float> pi = c.rotation().dense_matrix();
  d.pi = upload(pi);
  d.pi_t = upload(transpose(pi, spec.dim));
  if (d.hadamard) d.signs = upload(c.rotation().hadamard_signs());
  if (d.prod) {
    d.qjl = upload(c.qjl_matrix());
    d.qjl_t = upload(transpose(c.qjl_matrix(), spec.dim));
  }
  d.cent_hi = upload(c.centroids_hi());
  d.cent_lo = upload(c.centroids_lo());
  const CodeLayout& L = c.layout();
  auto thresholds = [&](int bits) {
    std::vector<float> t;
    if (bits <= 0) return t;
    const Codebook& cb = lloyd_max_codebook(spec.dim, bits);
    t.assign(cb.thresholds.begin(), cb.thresholds.end());  // cast to float as the CPU does
    return t;
  };
  if (L.hi_count > 0) d.thr_hi = upload(thresholds(L.hi_bits));
  if (L.lo_count() > 0 && L.lo_bits > 0) d.thr_lo = upload(thresholds(L.lo_bits));
}

DeviceCodec::~DeviceCodec() = default;
DeviceCodec::DeviceCodec(DeviceCodec&&) noexcept = default;
DeviceCodec& DeviceCodec::operator=(DeviceCodec&&) noexcept = default;
const CodecSpec& DeviceCodec::spec() const {
  return impl_->codec.spec();
}
const CodeLayout& DeviceCodec::layout() const {
  return impl_->codec.layout();
}
const Codec& DeviceCodec::host_codec() const {
  return impl_->codec;
}

GpuKvCacheStorage::GpuKvCacheStorage(const CodeLayout& key, const CodeLayout& value, int batch,
                                     int kv_heads, int capacity, int window_capacity) {
  if (key.dim != value.dim) {
    throw std::invalid_argument("GPU cache: key dim " + std::to_string(key.dim) +
                                " differs from value dim " + std::to_string(value.dim));
  }
  if (batch <= 0 || kv_heads <= 0 || capacity < 0 || window_capacity < 0) {
    throw std::invalid_argument("GPU cache: batch " + std::to_string(batch) + ", kv_heads " +
                                std::to_string(kv_heads) + ", capacity " +
                                std::to_string(capacity) + " must be positive");
  }
  const std::size_t slots = static_cast<std::size_t>(batch) * kv_heads * capacity;
  // One allocation carved into 256-byte aligned arrays.
  std::size_t offset = 0;
  std::vector<std::pair<void**, std::size_t>> parts;
  auto add = [&](void** where, std::size_t bytes) {
    if (bytes == 0) return;
    parts.push_back({where, offset});
    offset += (bytes + 255) / 256 * 256;
  };
  cache_.batch = batch;
  cache_.kv_heads = kv_heads;
  cache_.head_dim = key.dim;
  cache_.capacity = capacity;
  cache_.window_capacity = window_capacity;
  for (auto [side, L] : {std::pair{&cache_.key, &key}, std::pair{&cache_.value, &value}}) {
    add(reinterpret_cast<void**>(&side->codes), slots * L->code_bytes);
    add(reinterpret_cast<void**>(&side->signs), slots * L->sign_bytes);
    add(reinterpret_cast<void**>(&side->norms), slots * 2);
    if (L->has_residual_norm) add(reinterpret_cast<void**>(&side->residual_norms), slots * 2);
  }
  compressed_bytes_ = slots * (key.bytes_per_token() + value.bytes_per_token());
  const std::size_t window =
      static_cast<std::size_t>(batch) * kv_heads * window_capacity * key.dim * 2;
  add(reinterpret_cast<void**>(&cache_.key_window), window);
  add(reinterpret_cast<void**>(&cache_.value_window), window);
  int* overflow = nullptr;
  add(reinterpret_cast<void**>(&overflow), sizeof(int));
  TQ_CUDA_CHECK(cudaMalloc(&block_, offset));
  for (auto& [where, off] : parts) *where = static_cast<char*>(block_) + off;
  // All of it zeroed (the overflow word must be; the rest costs one memset per cache): slots
  // not yet written read as zeros, never as whatever the allocator left there.
  const cudaError_t zeroed = cudaMemset(block_, 0, offset);
  if (zeroed != cudaSuccess) {
    cudaFree(block_);
    block_ = nullptr;
    TQ_CUDA_CHECK(zeroed);
  }
  cache_.key.overflow = cache_.value.overflow = overflow;
}

GpuKvCacheStorage::~GpuKvCacheStorage() {
  if (block_) cudaFree(block_);
}

AttentionWorkspace::AttentionWorkspace() = default;
AttentionWorkspace::~AttentionWorkspace() {
  if (ptr_) cudaFree(ptr_);
  if (counters_) cudaFree(counters_);
}

int* AttentionWorkspace::zeroed_counters(std::size_t n) {
  detail::grow(counters_, counter_n_, n, sizeof(int), true);
  return counters_;
}

void* AttentionWorkspace::reserve(std::size_t bytes) {
  detail::grow(ptr_, bytes_, bytes, 1, false);
  return ptr_;
}

}  // namespace tq::cuda
