// libFuzzer's initialization for the server's fuzz targets that parse protobuf: protobuf logs
// every string field with invalid UTF-8 it meets; routerd rate-limits those lines
// (log_limiter.h), the fuzzer drops them. Linked as a source of each such target (an archive
// member would not be pulled in by libFuzzer's weak reference).

#include "google/protobuf/stubs/logging.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}
