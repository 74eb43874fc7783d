/* io.c -- message files: mmap + unpack for binary, text parse/print, atomic writers. */
#include "proto/io.h"
#include "proto/hdf5_io.h"
#include "proto/raw_blobs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "proto/textformat.h"
#include "proto/upgrade.h"

void crema_message_free(void *msg) {
  if (msg) protobuf_c_message_free_unpacked(msg, NULL);
}

void *crema_message_copy(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) return NULL;
  protobuf_c_message_pack(m, buf);
  ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
  free(buf);
  return c;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  if (n < m) return false;
  for (size_t i = 0; i < m; i++) {
    char a = s[n - m + i], b = suffix[i];
    if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
    if (a != b) return false;
  }
  return true;
}

bool crema_path_is_text(const char *path) {
  return ends_with(path, ".prototxt") || ends_with(path, ".pbtxt") || ends_with(path, ".txt");
}

/* A file mapped read-only (or, for an empty file, nothing mapped). */
typedef struct mapped {
  const unsigned char *data;
  size_t len;
} mapped;

static int map_file(const char *path, mapped *m, crema_error *err) {
  m->data = NULL;
  m->len = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) return crema_fail(err, "%s: no such file", path);
    if (e == EACCES) return crema_fail(err, "%s: permission denied (check the file's permissions)", path);
    return crema_fail(err, "%s: cannot open: %s", path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return crema_fail(err, "%s: cannot stat: %s", path, strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return crema_fail(err, "%s: is a directory, not a file", path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return crema_fail(err, "%s: not a regular file", path);
  }
  if (st.st_size == 0) {
    close(fd);
    return crema_fail(err, "%s: the file is empty", path);
  }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) return crema_fail(err, "%s: cannot map the file: %s", path, strerror(e));
  /* One front-to-back pass: let the kernel read ahead and drop pages behind. */
  posix_madvise(p, (size_t)st.st_size, POSIX_MADV_SEQUENTIAL);
  m->data = p;
  m->len = (size_t)st.st_size;
  return 0;
}

static void unmap_file(mapped *m) {
  if (m->data) munmap((void *)m->data, m->len);
  m->data = NULL;
}

/* Heuristic: the first 4 KB hold no NUL and few control bytes -> probably a text file. */
static bool looks_like_text(const unsigned char *d, size_t len) {
  size_t n = len < 4096 ? len : 4096, bad = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = d[i];
    if (c == 0) return false;
    if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f' && c != '\v') bad++;
  }
  return bad * 100 <= n;
}

bool crema_file_looks_like_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  unsigned char buf[4096];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  return n > 0 && looks_like_text(buf, n);
}

static int unpack_mapped(const char *path, const ProtobufCMessageDescriptor *desc, const mapped *m,
                         ProtobufCMessage **out, crema_error *err) {
  *out = protobuf_c_message_unpack(desc, NULL, m->len, m->data);
  if (!*out) {
    if (looks_like_text(m->data, m->len))
      return crema_fail(err,
                        "%s: not a valid binary %s; it looks like a text file (prototxt) -- "
                        "give a binary file here, or convert it with `crema upgrade`",
                        path, desc->short_name);
    return crema_fail(err, "%s: not a valid %s (truncated or not a Caffe binary file)", path,
                      desc->short_name);
  }
  return 0;
}

static int parse_mapped_text(const char *path, const ProtobufCMessageDescriptor *desc, const mapped *m,
                             ProtobufCMessage **out, crema_error *err) {
  if (!looks_like_text(m->data, m->len))
    return crema_fail(err,
                      "%s: expected a text %s (prototxt) but the file holds binary data -- is it a "
                      ".caffemodel or .binaryproto?",
                      path, desc->short_name);
  return crema_text_parse(desc, (const char *)m->data, m->len, path, out, err);
}

int crema_read_binary_message(const char *path, const ProtobufCMessageDescriptor *desc,
                              ProtobufCMessage **out, crema_error *err) {
  *out = NULL;
  mapped m;
  if (map_file(path, &m, err)) return -1;
  int rc = unpack_mapped(path, desc, &m, out, err);
  unmap_file(&m);
  return rc;
}

int crema_read_text_message(const char *path, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                            crema_error *err) {
  *out = NULL;
  mapped m;
  if (map_file(path, &m, err)) return -1;
  int rc = parse_mapped_text(path, desc, &m, out, err);
  unmap_file(&m);
  return rc;
}

int crema_read_message(const char *path, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                       crema_error *err) {
  *out = NULL;
  mapped m;
  if (map_file(path, &m, err)) return -1;
  int rc;
  if (crema_path_is_text(path)) {
    rc = parse_mapped_text(path, desc, &m, out, err);
  } else {
    *out = protobuf_c_message_unpack(desc, NULL, m.len, m.data);
    if (*out && looks_like_text(m.data, m.len)) {
      /* Some text happens to be valid wire format (as unknown fields); if it parses as
       * text, it was text. */
      ProtobufCMessage *as_text = NULL;
      crema_error ignored;
      if (!crema_text_parse(desc, (const char *)m.data, m.len, path, &as_text, &ignored)) {
        crema_message_free(*out);
        *out = as_text;
      }
    }
    if (*out) {
      rc = 0;
    } else if (looks_like_text(m.data, m.len)) {
      rc = crema_text_parse(desc, (const char *)m.data, m.len, path, out, err);
    } else {
      rc = crema_fail(err, "%s: not a valid %s (truncated or not a Caffe binary file)", path,
                      desc->short_name);
    }
  }
  unmap_file(&m);
  return rc;
}

int crema_read_file(const char *path, char **out, size_t *len, crema_error *err) {
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    if (e == ENOENT) return crema_fail(err, "%s: no such file", path);
    if (e == EACCES) return crema_fail(err, "%s: permission denied (check the file's permissions)", path);
    return crema_fail(err, "%s: cannot open: %s", path, strerror(e));
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (n + 1 < cap) break;
    char *grown = realloc(buf, cap * 2);
    if (!grown) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = grown;
    cap *= 2;
  }
  int bad = ferror(f);
  fclose(f);
  if (!buf) return crema_fail(err, "%s: out of memory reading the file", path);
  if (bad) {
    free(buf);
    return crema_fail(err, "%s: read error (is it a directory?)", path);
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

/* ------------------------------------------------------------------ atomic writing */

/* A temp file beside the target: "<path>.tmp.<pid>.<k>", created exclusively with mode 0666
 * (less the umask) so the final file gets ordinary permissions. */
typedef struct atomic_file {
  FILE *f;
  char tmp[4096];
  const char *path;
} atomic_file;

static int atomic_open(atomic_file *af, const char *path, crema_error *err) {
  static int counter;
  af->path = path;
  af->f = NULL;
  crema_remove_stale_temps(path);
  char rb[512];
  for (int attempt = 0; attempt < 100; attempt++) {
    int k = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    int n = snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld.%d", path, (long)getpid(), k);
    if (n < 0 || (size_t)n >= sizeof af->tmp) return crema_fail(err, "%s: path too long", path);
    int fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      int e = errno;
      if (e == EACCES) return crema_fail(err, "%s: permission denied writing in its folder", path);
      if (e == ENOENT) return crema_fail(err, "%s: the folder does not exist", path);
      return crema_fail(err, "%s: cannot create a file beside it: %s", path,
                        crema_io_reason(e, path, rb, sizeof rb));
    }
    af->f = fdopen(fd, "wb");
    if (!af->f) {
      close(fd);
      unlink(af->tmp);
      return crema_fail(err, "%s: out of memory", path);
    }
    return 0;
  }
  return crema_fail(err, "%s: cannot create a temporary file beside it", path);
}

static void atomic_abort(atomic_file *af) {
  if (af->f) fclose(af->f);
  af->f = NULL;
  unlink(af->tmp);
}

/* Flushes, fsyncs and renames into place; on any failure removes the temp file. */
static int atomic_commit(atomic_file *af, crema_error *err) {
  int rc = 0;
  char rb[512];
  if (fflush(af->f) != 0 || ferror(af->f))
    rc = crema_fail(err, "%s: write failed: %s", af->path, crema_io_reason(errno, af->path, rb, sizeof rb));
  if (!rc && fsync(fileno(af->f)) != 0)
    rc = crema_fail(err, "%s: fsync failed: %s", af->path, crema_io_reason(errno, af->path, rb, sizeof rb));
  if (fclose(af->f) != 0 && !rc)
    rc = crema_fail(err, "%s: write failed: %s", af->path, crema_io_reason(errno, af->path, rb, sizeof rb));
  af->f = NULL;
  if (!rc && rename(af->tmp, af->path) != 0)
    rc = crema_fail(err, "%s: cannot rename the finished file into place: %s", af->path, strerror(errno));
  if (rc) {
    unlink(af->tmp);
    return rc;
  }
  /* Make the rename itself durable: fsync the folder (best effort; some filesystems refuse). */
  char dir[sizeof af->tmp];
  snprintf(dir, sizeof dir, "%s", af->path);
  char *slash = strrchr(dir, '/');
  if (slash == dir)
    dir[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    snprintf(dir, sizeof dir, ".");
  int dfd = open(dir, O_RDONLY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

int crema_write_file_atomic(const char *path, const void *data, size_t len, crema_error *err) {
  atomic_file af;
  if (atomic_open(&af, path, err)) return -1;
  if (len && fwrite(data, 1, len, af.f) != len) {
    int e = errno;
    atomic_abort(&af);
    char rb[512];
    return crema_fail(err, "%s: write failed: %s", path, crema_io_reason(e, path, rb, sizeof rb));
  }
  return atomic_commit(&af, err);
}

/* protobuf-c packs into this buffer, which passes the bytes to stdio's own buffer. */
typedef struct file_buffer {
  ProtobufCBuffer base;
  FILE *f;
  bool failed;
} file_buffer;

static void file_buffer_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
  file_buffer *fb = (file_buffer *)b;
  if (!fb->failed && len && fwrite(data, 1, len, fb->f) != len) fb->failed = true;
}

int crema_write_binary_message(const char *path, const ProtobufCMessage *msg, crema_error *err) {
  atomic_file af;
  if (atomic_open(&af, path, err)) return -1;
  /* A larger stdio buffer: packing appends many small pieces. */
  setvbuf(af.f, NULL, _IOFBF, 1 << 20);
  file_buffer fb = {.base = {.append = file_buffer_append}, .f = af.f, .failed = false};
  protobuf_c_message_pack_to_buffer(msg, &fb.base);
  if (fb.failed) {
    int e = errno;
    atomic_abort(&af);
    char rb[512];
    return crema_fail(err, "%s: write failed: %s", path, crema_io_reason(e, path, rb, sizeof rb));
  }
  return atomic_commit(&af, err);
}

int crema_write_text_message(const char *path, const ProtobufCMessage *msg, crema_error *err) {
  char *text = NULL;
  if (crema_text_print(msg, &text, err)) return crema_error_prefix(err, "%s", path);
  int rc = crema_write_file_atomic(path, text, strlen(text), err);
  free(text);
  return rc;
}

/* ------------------------------------------------------------------ nets and solvers */

int crema_read_net_param(const char *path, Crema__NetParameter **out, crema_error *err) {
  *out = NULL;
  ProtobufCMessage *m = NULL;
  /* Caffe's rule: a name ending in .h5 is an HDF5 caffemodel. */
  if (crema_hdf5_is_h5_name(path)) return crema_hdf5_read_net(path, out, err);
  if (crema_read_message(path, &crema__net_parameter__descriptor, &m, err)) return -1;
  Crema__NetParameter *net = (Crema__NetParameter *)m;
  bool changed = false;
  if (crema_net_decode_raw_blobs(net, err)) { /* NVIDIA Caffe's FLOAT16 raw_data */
    crema_error_prefix(err, "%s", path);
    crema_message_free(net);
    return -1;
  }
  if (crema_upgrade_net(net, path, &changed, err)) {
    crema_message_free(net);
    return -1;
  }
  *out = net;
  return 0;
}

int crema_read_solver_param(const char *path, Crema__SolverParameter **out, crema_error *err) {
  *out = NULL;
  ProtobufCMessage *m = NULL;
  if (crema_read_message(path, &crema__solver_parameter__descriptor, &m, err)) return -1;
  Crema__SolverParameter *s = (Crema__SolverParameter *)m;
  bool changed = false;
  if (crema_upgrade_solver(s, &changed, err)) {
    crema_error_prefix(err, "%s", path);
    crema_message_free(s);
    return -1;
  }
  *out = s;
  return 0;
}
