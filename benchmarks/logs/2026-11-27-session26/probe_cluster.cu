// Feasibility probe for a cluster design of the decode megakernel (perf-notes,
// twenty-second: DeltaNet heads owned by clusters). Answers, on the GPU it runs on:
//  1. How many blocks of the megakernel's shape (384 threads, all the shared
//     memory a block may opt into) are co-resident in clusters of 1, 2, 4, 8
//     and 16 blocks (cudaOccupancyMaxActiveClusters)?
//  2. Does a cooperative launch with a cluster dimension run, and are all its
//     blocks co-resident (each arrives at a counter and waits for all, with a
//     timeout)?
//  3. A round trip between two blocks through distributed shared memory
//     (within a cluster) against one through L2 (tagged global words, as the
//     megakernel's hand-offs): cycles per round trip, median of trials.
//  4. Both round trips again in one cluster launch of every co-resident block
//     (clusters of 2), idle and while the other blocks stream reads from HBM,
//     as the weight stream loads the memory system during the hand-offs.
// Build and run: nvcc -O2 -arch=sm_90a -o probe_cluster probe_cluster.cu && ./probe_cluster
#include <cooperative_groups.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace cg = cooperative_groups;

#define CHECK(call)                                                                          \
    do {                                                                                     \
        cudaError_t err_ = (call);                                                           \
        if (err_ != cudaSuccess) {                                                           \
            std::printf("FAILED %s: %s (line %d)\n", #call, cudaGetErrorString(err_), __LINE__); \
            std::exit(1);                                                                    \
        }                                                                                    \
    } while (0)

constexpr int THREADS = 384;         // the megakernel's block: 8 compute warps and a producer warpgroup
constexpr int ROUND_TRIPS = 2000;
constexpr long long TIMEOUT_CYCLES = 4000000000LL;   // ~2 s: a grid that is not co-resident

__device__ __forceinline__ unsigned ld_relaxed_cluster(const unsigned* p) {
    unsigned v;
    asm volatile("ld.relaxed.cluster.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void st_relaxed_cluster(unsigned* p, unsigned v) {
    asm volatile("st.relaxed.cluster.u32 [%0], %1;" :: "l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned ld_relaxed_gpu(const unsigned* p) {
    unsigned v;
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ void st_relaxed_gpu(unsigned* p, unsigned v) {
    asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" :: "l"(p), "r"(v) : "memory");
}

// Every block's thread 0 arrives, then waits until all have; `late` counts
// blocks that gave up (some block was not resident).
__global__ void all_resident(unsigned* arrived, unsigned* late) {
    extern __shared__ unsigned char smem[];
    if (threadIdx.x == 0) {
        smem[0] = 1;
        atomicAdd(arrived, 1u);
        const long long t0 = clock64();
        while (ld_relaxed_gpu(arrived) < gridDim.x)
            if (clock64() - t0 > TIMEOUT_CYCLES) {
                atomicAdd(late, 1u);
                break;
            }
    }
}

// Block rank 0 and 1 of one cluster bounce a counter through each other's
// shared memory; thread 0 of rank 0 reports cycles per round trip.
__global__ void __cluster_dims__(2, 1, 1) dsmem_ping_pong(long long* cycles) {
    __shared__ unsigned flag;
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) flag = 0;
    cluster.sync();
    const unsigned rank = cluster.block_rank();
    unsigned* peer = cluster.map_shared_rank(&flag, rank ^ 1u);
    if (threadIdx.x == 0) {
        const long long t0 = clock64();
        for (unsigned i = 1; i <= ROUND_TRIPS; ++i) {
            if (rank == 0) {
                st_relaxed_cluster(peer, i);
                while (ld_relaxed_cluster(&flag) != i) {}
            } else {
                while (ld_relaxed_cluster(&flag) != i) {}
                st_relaxed_cluster(peer, i);
            }
        }
        if (rank == 0) *cycles = (clock64() - t0) / ROUND_TRIPS;
    }
    cluster.sync();   // neither block leaves while the other may still write its shared memory
}

// The same through two global words (block 0 and 1 of a plain launch).
__global__ void l2_ping_pong(unsigned* words, long long* cycles) {
    if (threadIdx.x != 0) return;
    unsigned* mine = words + 32 * blockIdx.x;            // separate 128-byte lines
    unsigned* peer = words + 32 * (blockIdx.x ^ 1u);
    const long long t0 = clock64();
    for (unsigned i = 1; i <= ROUND_TRIPS; ++i) {
        if (blockIdx.x == 0) {
            st_relaxed_gpu(peer, i);
            while (ld_relaxed_gpu(mine) != i) {}
        } else {
            while (ld_relaxed_gpu(mine) != i) {}
            st_relaxed_gpu(peer, i);
        }
    }
    if (blockIdx.x == 0) *cycles = (clock64() - t0) / ROUND_TRIPS;
}

// Question 4, in one launch of clusters of 2 (every SM holds one block):
// cluster 0 bounces through distributed shared memory, cluster 1 through L2,
// and with `load` every other block streams 16-byte reads from `buf` until
// both are done. cycles[0] and cycles[1] get the two round trips.
__global__ void loaded_ping_pongs(const uint4* buf, size_t n16, unsigned* words, unsigned* done,
                                  long long* cycles, int load) {
    __shared__ unsigned flag;
    cg::cluster_group cluster = cg::this_cluster();
    const unsigned rank = cluster.block_rank(), group = blockIdx.x / 2;
    if (threadIdx.x == 0) flag = 0;
    cluster.sync();
    if (group < 2 && threadIdx.x == 0) {
        unsigned* peer = group == 0 ? cluster.map_shared_rank(&flag, rank ^ 1u) : words + 32 * (rank ^ 1u);
        unsigned* mine = group == 0 ? &flag : words + 32 * rank;
        const long long t0 = clock64();
        for (unsigned i = 1; i <= ROUND_TRIPS; ++i) {
            if (rank == 0) {
                group == 0 ? st_relaxed_cluster(peer, i) : st_relaxed_gpu(peer, i);
                while ((group == 0 ? ld_relaxed_cluster(mine) : ld_relaxed_gpu(mine)) != i) {}
            } else {
                while ((group == 0 ? ld_relaxed_cluster(mine) : ld_relaxed_gpu(mine)) != i) {}
                group == 0 ? st_relaxed_cluster(peer, i) : st_relaxed_gpu(peer, i);
            }
        }
        if (rank == 0) cycles[group] = (clock64() - t0) / ROUND_TRIPS;
        atomicAdd(done, 1u);
    } else if (group >= 2 && load) {
        const size_t stride = (size_t)(gridDim.x - 4) * blockDim.x;
        size_t i = (size_t)(blockIdx.x - 4) * blockDim.x + threadIdx.x;
        uint4 acc = make_uint4(0, 0, 0, 0);
        // A warp's lane 0 looks at `done` every 8 rounds: polls by every thread would
        // load the memory system with something the hand-offs do not see.
        for (unsigned round = 0;; ++round) {
            if (round % 8 == 0 &&
                __shfl_sync(0xffffffffu, threadIdx.x % 32 == 0 ? ld_relaxed_gpu(done) : 0u, 0) >= 2)
                break;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const uint4 v = __ldcs(buf + (i + k * stride) % n16);
                acc.x ^= v.x; acc.y ^= v.y; acc.z ^= v.z; acc.w ^= v.w;
            }
            i = (i + 4 * stride) % n16;
        }
        if (acc.x == 0x12345678u && acc.y == 0x9abcdef0u) words[64] = acc.z ^ acc.w;   // keeps the reads
    }
    cluster.sync();   // no block leaves while its peer may still write its shared memory
}

static cudaLaunchConfig_t shaped(int blocks, int shared_bytes, cudaLaunchAttribute* attrs, int n_attrs) {
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(blocks);
    config.blockDim = dim3(THREADS);
    config.dynamicSmemBytes = shared_bytes;
    config.attrs = attrs;
    config.numAttrs = n_attrs;
    return config;
}

static int max_blocks_in_clusters(int cluster, int shared_bytes) {
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = cluster;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    cudaLaunchConfig_t config = shaped(cluster, shared_bytes, &attr, 1);
    int clusters = 0;
    const cudaError_t err = cudaOccupancyMaxActiveClusters(&clusters, (void*)all_resident, &config);
    if (err != cudaSuccess) {
        std::printf("cluster %d: cudaOccupancyMaxActiveClusters: %s\n", cluster, cudaGetErrorString(err));
        cudaGetLastError();
        return 0;
    }
    return clusters * cluster;
}

static void cooperative_cluster_launch(int cluster, int blocks, int shared_bytes) {
    unsigned* counters;
    CHECK(cudaMalloc(&counters, 2 * sizeof(unsigned)));
    CHECK(cudaMemset(counters, 0, 2 * sizeof(unsigned)));
    cudaLaunchAttribute attrs[2];
    attrs[0].id = cudaLaunchAttributeClusterDimension;
    attrs[0].val.clusterDim.x = cluster;
    attrs[0].val.clusterDim.y = 1;
    attrs[0].val.clusterDim.z = 1;
    attrs[1].id = cudaLaunchAttributeCooperative;
    attrs[1].val.cooperative = 1;
    cudaLaunchConfig_t config = shaped(blocks, shared_bytes, attrs, 2);
    const cudaError_t launched = cudaLaunchKernelEx(&config, all_resident, counters, counters + 1);
    const cudaError_t ran = launched == cudaSuccess ? cudaDeviceSynchronize() : launched;
    unsigned host[2] = {0, 0};
    if (ran == cudaSuccess) CHECK(cudaMemcpy(host, counters, sizeof(host), cudaMemcpyDeviceToHost));
    std::printf("cooperative launch, clusters of %d, %d blocks: %s; arrived %u, gave up %u\n", cluster, blocks,
                cudaGetErrorString(ran), host[0], host[1]);
    cudaGetLastError();
    CHECK(cudaFree(counters));
}

template <class Launch>
static long long median_cycles(Launch launch) {
    long long* cycles;
    CHECK(cudaMalloc(&cycles, sizeof(long long)));
    std::vector<long long> trials;
    for (int t = 0; t < 7; ++t) {
        launch(cycles);
        CHECK(cudaGetLastError());
        CHECK(cudaDeviceSynchronize());
        long long c = 0;
        CHECK(cudaMemcpy(&c, cycles, sizeof(c), cudaMemcpyDeviceToHost));
        trials.push_back(c);
    }
    CHECK(cudaFree(cycles));
    std::sort(trials.begin(), trials.end());
    return trials[trials.size() / 2];
}

int main() {
    int device = 0, sms = 0, optin = 0;
    CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, device));
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    std::printf("%s: %d SMs, %d bytes of shared memory a block may opt into\n", prop.name, sms, optin);
    CHECK(cudaFuncSetAttribute(all_resident, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
    CHECK(cudaFuncSetAttribute(all_resident, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));

    for (int cluster : {1, 2, 4, 8, 16}) {
        const int blocks = max_blocks_in_clusters(cluster, optin);
        std::printf("clusters of %2d: %3d blocks co-resident\n", cluster, blocks);
        if (cluster <= 8 && blocks > 0) cooperative_cluster_launch(cluster, blocks, optin);
    }

    const long long dsmem = median_cycles([](long long* c) { dsmem_ping_pong<<<2, 32>>>(c); });
    unsigned* words;
    CHECK(cudaMalloc(&words, 64 * sizeof(unsigned)));
    CHECK(cudaMemset(words, 0, 64 * sizeof(unsigned)));
    const long long l2 = median_cycles([=](long long* c) {
        cudaMemset(words, 0, 64 * sizeof(unsigned));
        l2_ping_pong<<<2, 32>>>(words, c);
    });
    CHECK(cudaFree(words));
    std::printf("round trip, idle GPU: distributed shared memory %lld cycles, L2 %lld cycles\n", dsmem, l2);

    const int blocks = max_blocks_in_clusters(2, optin);
    const size_t n16 = (size_t(2) << 30) / sizeof(uint4);   // 2 GB: far beyond L2
    uint4* buf;
    unsigned* flags;
    long long* both;
    CHECK(cudaMalloc(&buf, n16 * sizeof(uint4)));
    CHECK(cudaMemset(buf, 1, n16 * sizeof(uint4)));
    CHECK(cudaMalloc(&flags, 128 * sizeof(unsigned)));   // words 0 and 32, sink 64, done 96: own lines
    CHECK(cudaMalloc(&both, 2 * sizeof(long long)));
    CHECK(cudaFuncSetAttribute(loaded_ping_pongs, cudaFuncAttributeMaxDynamicSharedMemorySize, optin - 1024));
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = 2;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    for (int load : {0, 1}) {
        std::vector<long long> d, g;
        for (int t = 0; t < 7; ++t) {
            CHECK(cudaMemset(flags, 0, 128 * sizeof(unsigned)));
            cudaLaunchConfig_t config = shaped(blocks, optin - 1024, &attr, 1);
            CHECK(cudaLaunchKernelEx(&config, loaded_ping_pongs, (const uint4*)buf, n16, flags, flags + 96,
                                     both, load));
            CHECK(cudaDeviceSynchronize());
            long long host[2];
            CHECK(cudaMemcpy(host, both, sizeof(host), cudaMemcpyDeviceToHost));
            d.push_back(host[0]);
            g.push_back(host[1]);
        }
        std::sort(d.begin(), d.end());
        std::sort(g.begin(), g.end());
        std::printf("round trip in one launch of %d blocks, %s: distributed shared memory %lld cycles, L2 %lld cycles\n",
                    blocks, load ? "the others streaming from HBM" : "the others idle", d[3], g[3]);
    }
    return 0;
}
