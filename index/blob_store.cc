#include "index/blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>

namespace imgfs {

Status BlobStore::Init() const {
  // Private to the store's owner (see Store::Init): blobs are every image's files.
  IMGFS_RETURN_IF_ERROR(MakeDirs(root_ + "/blobs/sha256", 0700));
  return MakeDirs(IngestDir(), 0700);
}

bool BlobStore::Has(const Digest& d) const {
  struct stat st;
  return ::stat(BlobPath(d).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool BlobStore::HasWhole(const Digest& d, uint64_t size) const {
  auto have = Size(d);
  return have.ok() && *have == size;
}

Result<uint64_t> BlobStore::Size(const Digest& d) const {
  struct stat st;
  if (::stat(BlobPath(d).c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::NotFound("blob " + d.str() + " is not in the store");
    return Status::FromErrno("stat blob " + d.str());
  }
  return static_cast<uint64_t>(st.st_size);
}

Result<std::unique_ptr<BlobStore::Writer>> BlobStore::NewWriter() const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string tmp =
      IngestDir() + "/" + std::to_string(::getpid()) + "-" + std::to_string(rng()) + ".part";
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600));
  return std::unique_ptr<Writer>(new Writer(this, tmp, std::move(fd)));
}

Result<std::unique_ptr<BlobStore::Writer>> BlobStore::OpenPartial(const Digest& d,
                                                                  uint64_t max_size) const {
  std::string path = PartialPath(d);
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY | O_CREAT, 0600));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + path);
  uint64_t have = static_cast<uint64_t>(st.st_size);
  if (have > max_size) {
    if (::ftruncate(fd.get(), 0) != 0) return Status::FromErrno("truncate " + path);
    have = 0;
  }
  if (::lseek(fd.get(), static_cast<off_t>(have), SEEK_SET) < 0)
    return Status::FromErrno("seek " + path);
  std::unique_ptr<Writer> w(new Writer(this, path, std::move(fd)));
  w->have_ = have;
  w->keep_ = true;
  return w;
}

BlobStore::Writer::~Writer() {
  // A resumable file that never received a byte is not worth keeping.
  if (!done_ && (!keep_ || (have_ == 0 && size_ == 0))) ::unlink(tmp_.c_str());
}

void BlobStore::Writer::Discard() {
  if (!done_) ::unlink(tmp_.c_str());
  keep_ = false;
  done_ = true;
}

Status BlobStore::Writer::Write(const void* data, size_t n) {
  if (hashing_) hash_.Update(data, n);
  uint64_t old = size_;
  size_ += n;
  if (size_ <= have_) return Status::Ok();  // already in the partial file
  size_t skip = old < have_ ? static_cast<size_t>(have_ - old) : 0;
  IMGFS_RETURN_IF_ERROR(WriteAll(fd_.get(), static_cast<const char*>(data) + skip, n - skip)
                            .WithContext("write " + tmp_));
  // Start writeback as the blob grows (without waiting for it), so that Commit's fsync
  // finds little left to write instead of the whole blob.
  constexpr uint64_t kFlushEvery = 8 << 20;
  if (size_ - flushed_ >= kFlushEvery) {
    (void)::sync_file_range(fd_.get(), static_cast<off_t>(flushed_),
                            static_cast<off_t>(size_ - flushed_), SYNC_FILE_RANGE_WRITE);
    flushed_ = size_;
  }
  return Status::Ok();
}

Digest BlobStore::Writer::Sum() {
  if (!sum_) sum_ = hash_.Finish();
  return *sum_;
}

Status BlobStore::Writer::Sync() {
  if (::fsync(fd_.get()) != 0) return Status::FromErrno("fsync " + tmp_);
  synced_ = size_;
  return Status::Ok();
}

Result<Digest> BlobStore::Writer::Commit(const std::optional<Digest>& expected,
                                         std::optional<uint64_t> expected_size,
                                         Durability durability) {
  if (!hashing_ && !expected)
    return Status::InvalidArgument("commit " + tmp_ + ": no digest (the writer did not hash)");
  Digest got = hashing_ ? Sum() : *expected;
  if (expected_size && *expected_size != size_) {
    return Status::Corruption("size mismatch: expected " + std::to_string(*expected_size) +
                              " bytes, got " + std::to_string(size_));
  }
  if (expected && !(*expected == got)) {
    return Status::Corruption("digest mismatch: expected " + expected->str() + ", got " +
                              got.str());
  }
  const bool durable = durability != Durability::kLater;
  if (durable && synced_ != size_ && ::fsync(fd_.get()) != 0)
    return Status::FromErrno("fsync " + tmp_);
  ::fchmod(fd_.get(), 0400);  // read-only, and the owner's alone
  fd_.Reset();
  std::string dst = store_->BlobPath(got);
  if (::rename(tmp_.c_str(), dst.c_str()) != 0) return Status::FromErrno("rename to " + dst);
  done_ = true;
  if (durability == Durability::kNow) IMGFS_RETURN_IF_ERROR(store_->SyncDir());
  return got;
}

Status BlobStore::SyncDir() const {
  return FsyncDir(root_ + "/blobs/sha256");
}

Status BlobStore::SyncBlob(const Digest& d) const {
  // (fsync needs no write access; a clean file costs little more than the open.)
  IMGFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(BlobPath(d), O_RDONLY));
  if (::fsync(fd.get()) != 0) return Status::FromErrno("fsync blob " + d.str());
  return Status::Ok();
}

Status BlobStore::SyncAll() const {
  std::string dir = root_ + "/blobs/sha256";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + dir);
  int rc = ::syncfs(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::Io("syncfs " + dir, err);
  return Status::Ok();
}

Result<Digest> BlobStore::Put(std::string_view data, const std::optional<Digest>& expected,
                              Durability durability) const {
  // Present already with these very bytes (a file a crash left short or damaged is
  // written again): made durable here too, as its writer may have left that to a
  // sync still to come (Durability::kLater) when this image's index transaction names it.
  if (expected && HasWhole(*expected, data.size())) {
    Digest got = Sha256Of(data);
    if (!(got == *expected)) {
      return Status::Corruption("digest mismatch: expected " + expected->str() + ", got " +
                                got.str());
    }
    auto held = Read(got, data.size() + 1);
    if (held.ok() && *held == data) {
      if (durability != Durability::kLater) IMGFS_RETURN_IF_ERROR(SyncBlob(got));
      return got;
    }
  }
  IMGFS_ASSIGN_OR_RETURN(auto w, NewWriter());
  IMGFS_RETURN_IF_ERROR(w->Write(data.data(), data.size()));
  return w->Commit(expected, data.size(), durability);
}

Result<std::string> BlobStore::Read(const Digest& d, size_t max_size) const {
  auto r = ReadFileToString(BlobPath(d), max_size);
  if (!r.ok() && r.status().sys_errno() == ENOENT) {
    return Status::NotFound("blob " + d.str() + " is not in the store");
  }
  return r;
}

Status BlobStore::Delete(const Digest& d) const {
  if (::unlink(BlobPath(d).c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno("remove blob " + d.str());
  }
  return Status::Ok();
}

Result<std::vector<Digest>> BlobStore::List() const {
  std::vector<Digest> out;
  std::string dir = root_ + "/blobs/sha256";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::FromErrno("opendir " + dir);
  while (struct dirent* e = ::readdir(d)) {
    auto dg = Digest::FromHex(e->d_name);
    if (dg.ok()) out.push_back(*dg);
  }
  ::closedir(d);
  return out;
}

}  // namespace imgfs
