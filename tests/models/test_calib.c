/* Calibration (fusion/calib.c) against the NumPy reference of
 * tests/reference/make_calibration_fixtures.py on committed logits: bin
 * counts exactly, per-bin confidence and accuracy, ECE, MCE and NLL within
 * 1e-9, the fitted temperature within 1e-9 relative; then the errors. */
#include "tsr_fusion.h"
#include "testutil.h"

#define FIX TSR_FIXTURES "/calibration"

static double num(const cJSON *o, const char *k)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* Compares one calibration with the reference's; returns the max error. */
static void compare(const char *name, const char *what, const tsr_calibration *c, const cJSON *ref)
{
    int bins = (int)num(ref, "bins"), counts[TSR_CALIB_MAX_BINS];
    int nb = json_int_array(cJSON_GetObjectItemCaseSensitive(ref, "count"), counts, TSR_CALIB_MAX_BINS);
    int same = nb == c->bins && bins == c->bins;
    for (int b = 0; same && b < bins; b++)
        same = counts[b] == c->count[b];
    check(same, "%s %s: %d bins, counts per bin equal to the reference's", name, what, bins);
    double maxe = 0;
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(ref, "conf"),
                *ac = cJSON_GetObjectItemCaseSensitive(ref, "acc");
    for (int b = 0; b < bins && b < nb; b++) {
        double e1 = fabs(c->conf[b] - cJSON_GetNumberValue(cJSON_GetArrayItem(cf, b)));
        double e2 = fabs(c->acc[b] - cJSON_GetNumberValue(cJSON_GetArrayItem(ac, b)));
        maxe = fmax(maxe, fmax(e1, e2));
    }
    double ee = fabs(c->ece - num(ref, "ece")), em = fabs(c->mce - num(ref, "mce")),
           en = fabs(c->nll - num(ref, "nll")), ea = fabs(c->accuracy - num(ref, "accuracy"));
    maxe = fmax(maxe, fmax(fmax(ee, em), fmax(en, ea)));
    check(maxe <= 1e-9, "%s %s: ECE %.6f (ref %.6f), MCE %.6f, NLL %.6f, accuracy %.4f; max error "
                        "%.2e (tolerance 1e-9)", name, what, c->ece, num(ref, "ece"), c->mce, c->nll,
          c->accuracy, maxe);
}

int main(void)
{
    cJSON *root = load_json(FIX "/expected.json");
    if (!root) {
        check(0, "read %s/expected.json", FIX);
        return finish();
    }
    const cJSON *cs;
    cJSON_ArrayForEach(cs, cJSON_GetObjectItemCaseSensitive(root, "cases"))
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cs, "name"));
        char path[512];
        snprintf(path, sizeof path, "%s/%s_logits.npy", FIX, name);
        int nd = 0;
        long dims[4] = {0};
        float *z = load_npy(path, &nd, dims);
        int N = (int)dims[0], L = (int)dims[1];
        int *y = malloc(sizeof(int) * (size_t)(N > 0 ? N : 1));
        int ny = json_int_array(cJSON_GetObjectItemCaseSensitive(cs, "labels"), y, N);
        if (!z || nd != 2 || ny != N) {
            check(0, "%s: logits and labels (%d rows, %d labels)", name, N, ny);
            free(z);
            free(y);
            continue;
        }
        tsr_error err = {0};
        tsr_calibration c;
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(cs, "at_temperature");
        int bins = (int)num(at, "bins");
        check(tsr_calibration_compute(z, y, N, L, num(at, "temperature"), bins, &c, &err) == TSR_OK,
              "%s: calibration at T %g (%s)", name, num(at, "temperature"), err.msg);
        compare(name, "at the given temperature", &c, at);
        const cJSON *one = cJSON_GetObjectItemCaseSensitive(cs, "at_one");
        tsr_calibration_compute(z, y, N, L, 1.0, bins, &c, &err);
        compare(name, "at T 1", &c, one);

        double T = 0, Tref = num(cs, "fitted_temperature");
        check(tsr_fit_temperature(z, y, N, L, &T, &err) == TSR_OK, "%s: fit (%s)", name, err.msg);
        double rel = fabs(T - Tref) / Tref;
        check(rel <= 1e-9, "%s: fitted temperature %.12f, reference %.12f (bisection), relative "
                           "error %.2e (tolerance 1e-9)", name, T, Tref, rel);
        tsr_calibration_compute(z, y, N, L, T, bins, &c, &err);
        compare(name, "after the fit", &c, cJSON_GetObjectItemCaseSensitive(cs, "after_fit"));

        /* the fitted temperature is a minimum of the NLL */
        tsr_calibration lo, hi;
        tsr_calibration_compute(z, y, N, L, T * 0.99, bins, &lo, &err);
        tsr_calibration_compute(z, y, N, L, T * 1.01, bins, &hi, &err);
        check(c.nll < lo.nll && c.nll < hi.nll, "%s: NLL %.6f at T, %.6f and %.6f at 0.99 T and "
                                                "1.01 T", name, c.nll, lo.nll, hi.nll);

        /* softmax rows at a temperature, against the definition */
        float *p = malloc(sizeof(float) * (size_t)L);
        memcpy(p, z, sizeof(float) * (size_t)L);
        tsr_softmax_rows(p, 1, L, 2.5);
        double s = 0, maxe = 0;
        for (int l = 0; l < L; l++)
            s += exp(z[l] / 2.5);
        for (int l = 0; l < L; l++)
            maxe = fmax(maxe, fabs(p[l] - exp(z[l] / 2.5) / s));
        check(maxe < 1e-7, "%s: softmax at T 2.5, max error %.2e", name, maxe);
        free(p);
        free(z);
        free(y);
    }
    cJSON_Delete(root);

    /* errors and edges */
    tsr_error err = {0};
    tsr_calibration c;
    float z[6] = {1, 2, 3, 3, 2, 1};
    int y[2] = {2, 0}, bad[2] = {2, 3};
    check(tsr_calibration_compute(z, bad, 2, 3, 1, 15, &c, &err) == TSR_ERR_INVALID_ARG &&
              strstr(err.msg, "label 3"),
          "a label out of range is refused: %s", err.msg);
    check(tsr_calibration_compute(z, y, 2, 3, 1, 0, &c, &err) == TSR_ERR_INVALID_ARG,
          "0 bins are refused: %s", err.msg);
    check(tsr_calibration_compute(z, y, 2, 3, 0, 15, &c, &err) == TSR_ERR_INVALID_ARG,
          "temperature 0 is refused: %s", err.msg);
    float zn[6] = {1, NAN, 3, 3, 2, 1};
    check(tsr_calibration_compute(zn, y, 2, 3, 1, 15, &c, &err) == TSR_ERR_INVALID_ARG &&
              strstr(err.msg, "not finite"),
          "a NaN score is refused: %s", err.msg);
    double T = 0;
    check(tsr_fit_temperature(z, y, 2, 3, &T, &err) == TSR_OK && T == TSR_TEMPERATURE_MIN,
          "separable scores (every arg max right) fit the smallest temperature: %g", T);
    int wrong[2] = {0, 2};
    check(tsr_fit_temperature(z, wrong, 2, 3, &T, &err) == TSR_ERR_INVALID_ARG,
          "scores that favour the wrong classes fit no temperature: %s", err.msg);
    double pmax = exp(3.0) / (exp(1.0) + exp(2.0) + exp(3.0)); /* 0.665: bin (0.6, 0.667] */
    check(tsr_calibration_compute(z, y, 2, 3, 1, 15, &c, &err) == TSR_OK && c.accuracy == 1 &&
              c.count[9] == 2 && fabs(c.ece - (1 - pmax)) < 1e-12 && fabs(c.conf[9] - pmax) < 1e-12,
          "two rows, both right at confidence %.4f: bin 9 holds both, ECE %.6f", pmax, c.ece);
    return finish();
}
