#include "tests/server/ledger_redis/redis_server.h"

#include <netinet/in.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace router::testing {
namespace {

// A port the kernel says is free now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(const RedisServerOptions& options) {
  if (access("/usr/bin/redis-server", X_OK) != 0) {
    return absl::FailedPreconditionError("redis-server is not installed (deploy/install-deps.sh)");
  }
  std::unique_ptr<RedisServer> r(new RedisServer());
  r->options_ = options;
  char tmpl[] = "/tmp/router-redis-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  r->dir_ = tmpl;
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    r->port_ = FreePort();
    last = r->Launch();
    if (last.ok()) return r;
  }
  return last;
}

RedisServer::~RedisServer() {
  Resume();
  Kill();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string RedisServer::address() const { return absl::StrCat("127.0.0.1:", port_); }

absl::Status RedisServer::Launch() {
  const std::string conf = dir_ + "/redis.conf";
  {
    std::ofstream out(conf);
    out << "port " << port_ << "\nbind 127.0.0.1\ndir " << dir_ << "\nsave \"\"\n"
        << "maxmemory-policy noeviction\nlogfile " << dir_ << "/redis.log\n";
    if (options_.append_only) out << "appendonly yes\nappendfsync always\n";
    if (!options_.password.empty()) out << "requirepass " << options_.password << "\n";
  }
  pid_ = fork();
  if (pid_ == 0) {
    // Dies with the test (even a crashed one), and never holds the test's output open.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int null = open("/dev/null", O_RDWR);
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    execl("/usr/bin/redis-server", "redis-server", conf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    absl::StatusOr<std::string> pong = Cli("PING");
    if (pong.ok() && pong->find("PONG") != std::string::npos) return absl::OkStatus();
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat("redis-server exited: ", ReadFile(dir_ + "/redis.log")));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  Kill();
  return absl::UnavailableError(absl::StrCat("redis-server did not answer: ", ReadFile(dir_ + "/redis.log")));
}

void RedisServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

absl::Status RedisServer::KillAndRestart() {
  Kill();
  return Launch();
}

absl::Status RedisServer::RestartEmpty() {
  Kill();
  std::error_code ec;
  std::filesystem::remove_all(dir_ + "/appendonlydir", ec);
  std::filesystem::remove(dir_ + "/dump.rdb", ec);
  return Launch();
}

void RedisServer::Stall() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void RedisServer::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

absl::StatusOr<std::string> RedisServer::Cli(const std::string& args) const {
  // REDISCLI_AUTH keeps the password off the command line.
  const std::string cmd = absl::StrCat(
      options_.password.empty() ? "" : absl::StrCat("REDISCLI_AUTH='", options_.password, "' "),
      "/usr/bin/redis-cli -h 127.0.0.1 -p ", port_, " ", args, " 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError("popen failed");
  std::string out;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  if (rc != 0) return absl::UnavailableError(out);
  return out;
}

}  // namespace router::testing
