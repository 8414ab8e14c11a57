/* FAISS behind extern "C": the one C++ file of tessera (tsr_faiss.h). It
 * builds, tunes, searches, serialises and reads back the indexes of
 * tsr_ann.h; fusion/ann.c checks the arguments and owns the files. Every
 * entry point catches every exception: FAISS reports errors by throwing,
 * and no exception may unwind into C. */
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexRefine.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/random.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <typeinfo>
#include <vector>

#include "tsr_faiss.h"

struct tsr_faiss {
    std::unique_ptr<faiss::IndexIDMap2> map; // owns the index below
    int kind = TSR_FAISS_FLAT;
    faiss::IndexHNSWFlat *hnsw = nullptr;  // hnsw: map->index
    faiss::IndexRefine *refine = nullptr;  // ivf-pq: map->index, exact re-ranking
    faiss::IndexIVFPQ *ivf = nullptr;      // ivf-pq: refine->base_index
};

namespace {

/* OpenMP threads for one call, in the calling thread only, restored after. */
struct Threads {
    int old = 0;
    explicit Threads(int n)
    {
        if (n > 0) {
            old = omp_get_max_threads();
            omp_set_num_threads(n);
        }
    }
    ~Threads()
    {
        if (old > 0)
            omp_set_num_threads(old);
    }
};

/* FAISS's messages read "Error in <function> at <file>:<line>: <text>". */
const char *faiss_text(const char *m)
{
    const char *at = std::strstr(m, " at ");
    const char *colon = at ? std::strstr(at + 4, ": ") : nullptr;
    return colon ? colon + 2 : m;
}

/* Runs f, turning whatever it throws into a status: what says what was
 * being done, code is the status for FAISS's own errors. */
template <class F> tsr_status guarded(tsr_error *err, tsr_status code, const char *what, F &&f)
{
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return tsr_error_set(err, TSR_ERR_NOMEM, "%s: out of memory", what);
    } catch (const faiss::FaissException &e) {
        return tsr_error_set(err, code, "%s: FAISS: %s", what, faiss_text(e.what()));
    } catch (const std::exception &e) {
        return tsr_error_set(err, code, "%s: %s", what, e.what());
    } catch (...) {
        return tsr_error_set(err, code, "%s: unknown C++ exception", what);
    }
}

struct SinkWriter : faiss::IOWriter {
    tsr_faiss_sink sink;
    void *user;
    SinkWriter(tsr_faiss_sink s, void *u) : sink(s), user(u) { name = "tessera"; }
    size_t operator()(const void *ptr, size_t size, size_t nitems) override
    {
        if (size == 0 || nitems == 0)
            return nitems;
        if (nitems > SIZE_MAX / size)
            return 0;
        return sink(user, ptr, size * nitems) ? nitems : 0;
    }
};

struct SourceReader : faiss::IOReader {
    tsr_faiss_source source;
    void *user;
    SourceReader(tsr_faiss_source s, void *u) : source(s), user(u) { name = "tessera"; }
    size_t operator()(void *ptr, size_t size, size_t nitems) override
    {
        if (size == 0 || nitems == 0)
            return nitems;
        if (nitems > SIZE_MAX / size)
            return 0;
        return source(user, ptr, size * nitems) / size;
    }
};

/* Recall@10 of an index over the rows of x (labels are row numbers),
 * against exact search, for two kinds of query: up to 50 of the rows, each
 * left out of its own answers, and 50 points drawn from a normal
 * distribution fitted to the rows (each dimension's mean and spread), which
 * stand for queries from outside the collection; the lower of the two. */
struct Probe {
    const faiss::Index *index;
    int s_rows, s, k;
    std::vector<float> q;
    std::vector<int64_t> self, exact;

    Probe(const faiss::Index *ix, const float *x, int64_t n, int d) : index(ix)
    {
        s_rows = (int)std::min<int64_t>(n, 50);
        s = s_rows + 50;
        k = (int)std::min<int64_t>(n - 1, 10);
        q.resize((size_t)s * d);
        self.assign(s, -1);
        for (int i = 0; i < s_rows; i++) {
            self[i] = (int64_t)((double)i * n / s_rows);
            std::memcpy(&q[(size_t)i * d], x + self[i] * d, sizeof(float) * d);
        }
        std::vector<double> mean(d), var(d);
        int64_t m = std::min<int64_t>(n, 10000);
        for (int64_t i = 0; i < m; i++) {
            const float *row = x + (int64_t)((double)i * n / m) * d;
            for (int j = 0; j < d; j++) {
                mean[j] += row[j];
                var[j] += (double)row[j] * row[j];
            }
        }
        float *drawn = &q[(size_t)s_rows * d];
        faiss::float_randn(drawn, (size_t)(s - s_rows) * d, 1234);
        for (int i = 0; i < s - s_rows; i++)
            for (int j = 0; j < d; j++) {
                double mu = mean[j] / m, sd = std::sqrt(std::max(0.0, var[j] / m - mu * mu));
                drawn[(size_t)i * d + j] = (float)(mu + sd * drawn[(size_t)i * d + j]);
            }
        std::vector<float> dis((size_t)s * (k + 1));
        exact.resize((size_t)s * (k + 1));
        faiss::knn_inner_product(q.data(), x, d, s, n, k + 1, dis.data(), exact.data());
    }

    /* The first k labels of a result row that are not self. */
    static int others(const int64_t *row, int len, int64_t self, int k, int64_t *out)
    {
        int m = 0;
        for (int j = 0; j < len && m < k; j++)
            if (row[j] != self && row[j] >= 0)
                out[m++] = row[j];
        return m;
    }

    double recall() const
    {
        std::vector<float> dis((size_t)s * (k + 1));
        std::vector<int64_t> got((size_t)s * (k + 1));
        index->search(s, q.data(), k + 1, dis.data(), got.data());
        int64_t hits[2] = {0, 0}, total[2] = {0, 0};
        std::vector<int64_t> want(k), have(k);
        for (int i = 0; i < s; i++) {
            int nw = others(&exact[(size_t)i * (k + 1)], k + 1, self[i], k, want.data());
            int nh = others(&got[(size_t)i * (k + 1)], k + 1, self[i], k, have.data());
            for (int a = 0; a < nh; a++)
                hits[i >= s_rows] += std::find(want.begin(), want.begin() + nw, have[a]) !=
                                     want.begin() + nw;
            total[i >= s_rows] += nw;
        }
        double r = 1;
        for (int part = 0; part < 2; part++)
            if (total[part])
                r = std::min(r, (double)hits[part] / total[part]);
        return r;
    }
};

/* The smallest power of two from lo at which set(v) gives the target
 * recall, up to hi; then doubled (within hi) as a margin for queries that
 * are not in the collection. */
template <class Set> int ladder(const Probe &p, double target, int lo, int hi, Set set)
{
    int v = lo;
    for (;;) {
        set(v);
        if (v >= hi || p.recall() >= target)
            break;
        v = std::min(hi, v * 2);
    }
    v = std::min(hi, v * 2);
    set(v);
    return v;
}

void tune(tsr_faiss *f, const tsr_faiss_spec *s, const float *x, int64_t n, int d)
{
    if (f->hnsw && s->ef_search == 0) {
        Probe p(f->hnsw, x, n, d);
        ladder(p, s->target_recall, 16, 4096, [&](int v) { f->hnsw->hnsw.efSearch = v; });
    }
    if (f->ivf) {
        Probe p(f->refine, x, n, d);
        if (s->k_factor == 0) { // with every list probed (unless fixed), PQ alone decides
            if (s->nprobe == 0)
                f->ivf->nprobe = f->ivf->nlist;
            int hi = (int)std::max<int64_t>(1, std::min<int64_t>(1024, n / std::max(1, p.k)));
            ladder(p, s->target_recall, 1, hi, [&](int v) { f->refine->k_factor = (float)v; });
        }
        if (s->nprobe == 0)
            ladder(p, s->target_recall, 1, (int)f->ivf->nlist,
                   [&](int v) { f->ivf->nprobe = (size_t)v; });
    }
}

bool is_ip_flat(const faiss::Index *ix, int64_t n, int d)
{
    auto *fl = dynamic_cast<const faiss::IndexFlat *>(ix);
    return fl && fl->metric_type == faiss::METRIC_INNER_PRODUCT && fl->d == d && fl->ntotal == n &&
           fl->code_size == sizeof(float) * (size_t)d &&
           fl->codes.size() == (size_t)n * sizeof(float) * (size_t)d;
}

/* Every link in range and pointing at a node that has the level. */
std::string check_hnsw(const faiss::IndexHNSWFlat *h, int64_t n, int d)
{
    const faiss::HNSW &g = h->hnsw;
    if (!is_ip_flat(h->storage, n, d))
        return "the HNSW storage is not an inner-product flat index of the right size";
    const size_t L = g.cum_nneighbor_per_level.size();
    if (L < 2 || g.cum_nneighbor_per_level[0] != 0 || g.levels.size() != (size_t)n ||
        g.offsets.size() != (size_t)n + 1 || g.offsets[0] != 0 || g.efSearch < 1 ||
        g.efSearch > (1 << 20) || n > INT32_MAX)
        return "inconsistent HNSW tables";
    for (size_t l = 1; l < L; l++)
        if (g.cum_nneighbor_per_level[l] < g.cum_nneighbor_per_level[l - 1])
            return "inconsistent HNSW level sizes";
    for (int64_t i = 0; i < n; i++) {
        int lv = g.levels[i];
        if (lv < 1 || (size_t)lv >= L ||
            g.offsets[i + 1] - g.offsets[i] != (size_t)g.cum_nneighbor_per_level[lv])
            return "inconsistent HNSW node levels";
    }
    if (g.neighbors.size() != g.offsets[n])
        return "inconsistent HNSW link table";
    if (n == 0)
        return g.entry_point == -1 ? "" : "HNSW entry point out of range";
    if (g.entry_point < 0 || g.entry_point >= n || g.max_level != g.levels[g.entry_point] - 1)
        return "HNSW entry point out of range";
    for (int64_t i = 0; i < n; i++)
        for (int l = 0; l < g.levels[i]; l++)
            for (size_t j = g.offsets[i] + g.cum_nneighbor_per_level[l];
                 j < g.offsets[i] + g.cum_nneighbor_per_level[l + 1]; j++) {
                int v = g.neighbors[j];
                if (v != -1 && (v < 0 || v >= n || g.levels[v] <= l))
                    return "HNSW link out of range";
            }
    return "";
}

std::string check_ivfpq(const faiss::IndexRefine *r, int64_t n, int d)
{
    if (!is_ip_flat(r->refine_index, n, d) || typeid(*r->base_index) != typeid(faiss::IndexIVFPQ))
        return "the re-ranked index is not an IVF-PQ over an inner-product flat index";
    if (!std::isfinite(r->k_factor) || r->k_factor < 1 || r->k_factor > 1e6)
        return "k_factor out of range";
    auto *ivf = static_cast<const faiss::IndexIVFPQ *>(r->base_index);
    const faiss::ProductQuantizer &pq = ivf->pq;
    if (ivf->d != d || ivf->ntotal != n || ivf->metric_type != faiss::METRIC_INNER_PRODUCT ||
        ivf->nlist < 1 || ivf->nprobe < 1 || ivf->nprobe > ivf->nlist ||
        !is_ip_flat(ivf->quantizer, (int64_t)ivf->nlist, d))
        return "inconsistent IVF header or coarse quantizer";
    if (pq.d != (size_t)d || pq.M < 1 || pq.nbits < 1 || pq.nbits > 16 || pq.M * pq.dsub != pq.d ||
        pq.ksub != ((size_t)1 << pq.nbits) || pq.centroids.size() != pq.M * pq.ksub * pq.dsub ||
        pq.code_size != (pq.M * pq.nbits + 7) / 8 || ivf->code_size != pq.code_size)
        return "inconsistent product quantizer";
    auto *il = dynamic_cast<const faiss::ArrayInvertedLists *>(ivf->invlists);
    if (!il || typeid(*il) != typeid(faiss::ArrayInvertedLists) || il->nlist != ivf->nlist ||
        il->code_size != ivf->code_size || il->ids.size() != il->nlist ||
        il->codes.size() != il->nlist)
        return "inconsistent inverted lists";
    size_t total = 0;
    for (size_t l = 0; l < il->nlist; l++) {
        if (il->codes[l].size() != il->ids[l].size() * il->code_size)
            return "inconsistent inverted list sizes";
        for (int64_t id : il->ids[l])
            if (id < 0 || id >= n)
                return "inverted list entry out of range";
        total += il->ids[l].size();
    }
    return total == (size_t)n ? "" : "the inverted lists do not hold every vector";
}

/* Takes ix if it is one of the structures tsr_faiss_build makes. */
std::string adopt(tsr_faiss *f, std::unique_ptr<faiss::Index> &ix)
{
    auto *map = dynamic_cast<faiss::IndexIDMap2 *>(ix.get());
    if (!map || typeid(*map) != typeid(faiss::IndexIDMap2) || !map->index)
        return "not a tessera index (no IndexIDMap2 at the top)";
    const int64_t n = map->ntotal;
    const int d = map->d;
    faiss::Index *in = map->index;
    if (d < 1 || n < 0 || in->d != d || in->ntotal != n || map->id_map.size() != (size_t)n ||
        map->metric_type != faiss::METRIC_INNER_PRODUCT ||
        in->metric_type != faiss::METRIC_INNER_PRODUCT)
        return "inconsistent sizes or metric";
    for (int64_t id : map->id_map)
        if (id < 0)
            return "negative item id";
    std::string why;
    if (typeid(*in) == typeid(faiss::IndexFlatIP)) {
        f->kind = TSR_FAISS_FLAT;
        why = is_ip_flat(in, n, d) ? "" : "inconsistent flat index";
    } else if (typeid(*in) == typeid(faiss::IndexHNSWFlat)) {
        f->kind = TSR_FAISS_HNSW;
        f->hnsw = static_cast<faiss::IndexHNSWFlat *>(in);
        why = check_hnsw(f->hnsw, n, d);
    } else if (typeid(*in) == typeid(faiss::IndexRefineFlat)) {
        f->kind = TSR_FAISS_IVFPQ;
        f->refine = static_cast<faiss::IndexRefine *>(in);
        why = check_ivfpq(f->refine, n, d);
        f->ivf = static_cast<faiss::IndexIVFPQ *>(f->refine->base_index);
    } else {
        why = "not a tessera index (unexpected index type inside the IndexIDMap2)";
    }
    if (why.empty())
        f->map.reset(static_cast<faiss::IndexIDMap2 *>(ix.release()));
    return why;
}

} // namespace

extern "C" {

tsr_status tsr_faiss_build(const tsr_faiss_spec *s, const float *x, const int64_t *ids, int64_t n,
                           int d, tsr_faiss **out, tsr_error *err)
{
    *out = nullptr;
    return guarded(err, TSR_ERR_INVALID_ARG, "building the index", [&] {
        Threads threads(s->threads);
        auto f = std::make_unique<tsr_faiss>();
        f->kind = s->kind;
        std::unique_ptr<faiss::Index> inner;
        if (s->kind == TSR_FAISS_FLAT) {
            inner = std::make_unique<faiss::IndexFlatIP>(d);
        } else if (s->kind == TSR_FAISS_HNSW) {
            auto h = std::make_unique<faiss::IndexHNSWFlat>(d, s->hnsw_m,
                                                            faiss::METRIC_INNER_PRODUCT);
            h->hnsw.efConstruction = s->ef_construction;
            f->hnsw = h.get();
            inner = std::move(h);
        } else {
            auto q = std::make_unique<faiss::IndexFlatIP>(d);
            auto ivf = std::make_unique<faiss::IndexIVFPQ>(q.get(), d, (size_t)s->nlist,
                                                           (size_t)s->pq_m, (size_t)s->pq_bits,
                                                           faiss::METRIC_INNER_PRODUCT);
            ivf->own_fields = true;
            q.release();
            /* k-means on at most 64 points a centroid (ann.c keeps at least 39) */
            ivf->cp.max_points_per_centroid = 64;
            ivf->pq.cp.max_points_per_centroid = 64;
            auto r = std::make_unique<faiss::IndexRefineFlat>(ivf.get());
            r->own_fields = true;
            f->ivf = ivf.release();
            f->refine = r.get();
            inner = std::move(r);
        }
        f->map = std::make_unique<faiss::IndexIDMap2>(inner.get());
        f->map->own_fields = true;
        inner.release();
        if (!f->map->is_trained)
            f->map->train(n, x);
        std::vector<int64_t> rows;
        if (!ids) {
            rows.resize((size_t)n);
            for (int64_t i = 0; i < n; i++)
                rows[i] = i;
            ids = rows.data();
        }
        f->map->add_with_ids(n, x, ids);
        if (f->hnsw && s->ef_search > 0)
            f->hnsw->hnsw.efSearch = s->ef_search;
        if (f->ivf && s->nprobe > 0)
            f->ivf->nprobe = (size_t)std::min(s->nprobe, s->nlist);
        if (f->ivf && s->k_factor > 0)
            f->refine->k_factor = (float)s->k_factor;
        tune(f.get(), s, x, n, d);
        *out = f.release();
        return TSR_OK;
    });
}

tsr_status tsr_faiss_search(const tsr_faiss *f, int threads, const float *q, int64_t nq, int k,
                            float *scores, int64_t *ids, tsr_error *err)
{
    return guarded(err, TSR_ERR_INVALID_ARG, "searching the index", [&] {
        Threads t(threads);
        f->map->search(nq, q, k, scores, ids);
        return TSR_OK;
    });
}

tsr_status tsr_faiss_save(const tsr_faiss *f, tsr_faiss_sink sink, void *user, tsr_error *err)
{
    return guarded(err, TSR_ERR_IO, "writing the index", [&] {
        SinkWriter w(sink, user);
        faiss::write_index(f->map.get(), &w);
        return TSR_OK;
    });
}

tsr_status tsr_faiss_load(tsr_faiss_source src, void *user, tsr_faiss **out, tsr_error *err)
{
    *out = nullptr;
    return guarded(err, TSR_ERR_FORMAT, "reading the index", [&] {
        SourceReader r(src, user);
        std::unique_ptr<faiss::Index> ix(faiss::read_index(&r, 0));
        auto f = std::make_unique<tsr_faiss>();
        std::string why = adopt(f.get(), ix);
        if (!why.empty())
            return tsr_error_set(err, TSR_ERR_FORMAT, "%s", why.c_str());
        *out = f.release();
        return TSR_OK;
    });
}

tsr_status tsr_faiss_save_flat(const float *x, int64_t n, int d, tsr_faiss_sink sink, void *user,
                               tsr_error *err)
{
    return guarded(err, TSR_ERR_IO, "writing the flat index", [&] {
        faiss::IndexFlatIP ix(d);
        ix.add(n, x);
        SinkWriter w(sink, user);
        faiss::write_index(&ix, &w);
        return TSR_OK;
    });
}

void tsr_faiss_describe(const tsr_faiss *f, tsr_faiss_spec *s, int64_t *n, int *d)
{
    *s = tsr_faiss_spec{};
    s->kind = f->kind;
    if (f->hnsw) {
        s->hnsw_m = f->hnsw->hnsw.nb_neighbors(0) / 2;
        s->ef_construction = f->hnsw->hnsw.efConstruction;
        s->ef_search = f->hnsw->hnsw.efSearch;
    }
    if (f->ivf) {
        s->nlist = (int)f->ivf->nlist;
        s->pq_m = (int)f->ivf->pq.M;
        s->pq_bits = (int)f->ivf->pq.nbits;
        s->nprobe = (int)f->ivf->nprobe;
        s->k_factor = (int)f->refine->k_factor;
    }
    *n = f->map->ntotal;
    *d = f->map->d;
}

void tsr_faiss_free(tsr_faiss *f)
{
    delete f;
}

} // extern "C"
