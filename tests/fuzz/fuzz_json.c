/* libFuzzer: the JSON parser (src/core/json.c) and its checked accessors. */
#include "fuzz_common.h"
#include "lmscale/json.h"

static void walk(const lms_json *j, int depth) {
    for (; j; j = j->next) {
        int64_t v;
        float f;
        (void)lms_json_int(j, INT64_MIN, INT64_MAX, &v);
        (void)lms_json_int(j, 0, 1 << 20, &v);
        if (j->key) {
            char k[64];
            snprintf(k, sizeof k, "%.*s", (int)(j->key_len < 63 ? j->key_len : 63), j->key);
            (void)lms_json_get_float(j, k, &f);
        }
        (void)lms_json_at(j, 1);
        if (depth < 600) walk(j->child, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lms_json *j = NULL;
    if (lms_json_parse((const char *)data, size, "fuzz.json", &j) == LMS_OK) {
        walk(j, 0);
        (void)lms_json_get(j, "a");
        lms_json_free(j);
    }
    return 0;
}
