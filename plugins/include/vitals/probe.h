/* vitals probe plugin ABI. Plain C: nothing from C++ crosses this boundary.
 *
 * A plugin is a shared object that exports exactly one symbol, vitals_probe_entry(). The host calls
 * it with the ABI major it speaks; the plugin returns its descriptor, or NULL to refuse.
 *
 * Versioning: VITALS_ABI_MAJOR changes when a layout changes (all older plugins are refused);
 * VITALS_ABI_MINOR grows when a callback takes one of the `reserved` slots (older plugins leave it
 * NULL). The host refuses a plugin built for a newer minor or with a larger descriptor than it
 * knows.
 */
#ifndef VITALS_PROBE_H
#define VITALS_PROBE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VITALS_ABI_MAJOR 1u
#define VITALS_ABI_MINOR 0u
#define VITALS_ENTRY_SYMBOL "vitals_probe_entry"

#define VITALS_EXPORT __attribute__((visibility("default")))

typedef enum vitals_status { VITALS_PASS = 0, VITALS_WARN = 1, VITALS_FAIL = 2 } vitals_status;

/* Option types. The host validates every value against its type before create() and hands the
 * plugin normalised text: INT as decimal, BOOL as "true"/"false", DURATION as whole milliseconds,
 * LIST as one entry per element (same name, in order), MAP as one entry per key (key set). */
typedef enum vitals_option_type {
  VITALS_OPT_STRING = 0,
  VITALS_OPT_INT = 1,
  VITALS_OPT_BOOL = 2,
  VITALS_OPT_DURATION = 3,
  VITALS_OPT_LIST = 4,
  VITALS_OPT_MAP = 5
} vitals_option_type;

typedef struct vitals_option {
  const char* name;
  vitals_option_type type;
  const char* default_value; /* NULL: no default (see `required`) */
  const char* description;   /* one line, printed by `vitals describe` */
  int required;              /* non-zero: the config must set it */
  int secret;                /* non-zero: the value never leaves the host (logs, /health, CLI) */
} vitals_option;

typedef struct vitals_option_value {
  const char* name;  /* the option's name */
  const char* key;   /* MAP options: the entry's key; NULL otherwise */
  const char* value; /* normalised text, see vitals_option_type */
} vitals_option_value;

/* Base units of the numbers a result may carry; they become Prometheus metric-name suffixes. */
typedef enum vitals_unit {
  VITALS_UNIT_SECONDS = 0,
  VITALS_UNIT_BYTES = 1,
  VITALS_UNIT_RATIO = 2,
  VITALS_UNIT_COUNT = 3, /* no suffix */
  VITALS_UNIT_INFO = 4   /* a constant 1 carrying meaning in its name; no suffix */
} vitals_unit;

#define VITALS_STAGE_MAX 32
#define VITALS_MESSAGE_MAX 512
#define VITALS_NUMBER_NAME_MAX 48
#define VITALS_NUMBER_HELP_MAX 128
#define VITALS_NUMBERS_MAX 8

typedef struct vitals_number {
  char name[VITALS_NUMBER_NAME_MAX]; /* [a-z0-9_], e.g. "connect"; host appends the unit */
  char help[VITALS_NUMBER_HELP_MAX]; /* one line */
  uint32_t unit;                     /* vitals_unit */
  double value;
} vitals_number;

/* Filled by the plugin's run(). The host zeroes it and sets struct_size before each call. */
typedef struct vitals_result {
  uint32_t struct_size;
  uint32_t status;                  /* vitals_status */
  char stage[VITALS_STAGE_MAX];     /* how far the check got, e.g. "connect", "auth" */
  char message[VITALS_MESSAGE_MAX]; /* one line; never a secret */
  uint32_t number_count;
  vitals_number numbers[VITALS_NUMBERS_MAX];
} vitals_result;

typedef enum vitals_log_level {
  VITALS_LOG_DEBUG = 1,
  VITALS_LOG_INFO = 2,
  VITALS_LOG_WARN = 3,
  VITALS_LOG_ERROR = 4
} vitals_log_level;

/* What the host offers a plugin instance. Valid from create() until destroy(). */
typedef struct vitals_host {
  uint32_t struct_size;
  void* host_ctx;
  void (*log)(void* host_ctx, int level, const char* message);
} vitals_host;

typedef struct vitals_plugin {
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t struct_size; /* sizeof(vitals_plugin) when the plugin was built */
  const char* name;     /* [a-z0-9-]+, unique among loaded plugins */
  const char* version;
  const char* description;
  const vitals_option* options; /* option_count entries */
  uint32_t option_count;

  /* Returns 0 and sets *instance, or non-zero with a one-line reason in err. */
  int (*create)(const vitals_host* host, const vitals_option_value* values, uint32_t value_count,
                void** instance, char* err, size_t err_len);
  /* Runs the check once. deadline_ns: CLOCK_MONOTONIC time by which it must return. May be called
   * again only after it returned; different instances may run concurrently on different threads. */
  void (*run)(void* instance, uint64_t deadline_ns, vitals_result* result);
  void (*destroy)(void* instance);

  void* reserved[8]; /* future callbacks; NULL in ABI 1.0 */
} vitals_plugin;

typedef const vitals_plugin* (*vitals_probe_entry_fn)(uint32_t host_abi_major);

#ifdef __cplusplus
}
#endif

#endif /* VITALS_PROBE_H */
