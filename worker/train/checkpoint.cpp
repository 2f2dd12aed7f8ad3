#include "worker/train/checkpoint.h"

#include <sstream>

#include "common/file_util.h"

namespace kiln::train {

namespace {

torch::Tensor TextTensor(const std::string& text) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(text.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), text.data(), text.size());
  return t;
}

std::string TensorText(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kCPU).contiguous();  // loaded onto the training device, maybe CUDA
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()));
}

}  // namespace

Result<SavedCheckpoint> SaveCheckpoint(const std::string& path, torch::nn::Module& model,
                                       torch::optim::Optimizer& optimizer,
                                       const CheckpointState& state) {
  std::ostringstream out;
  try {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive model_archive, optimizer_archive;
    model.save(model_archive);
    optimizer.save(optimizer_archive);
    archive.write("model", model_archive);
    archive.write("optimizer", optimizer_archive);
    archive.write("step", torch::tensor(state.step, torch::kInt64));
    archive.write("epoch", torch::tensor(state.epoch, torch::kInt64));
    archive.write("world_size", torch::tensor(state.world_size, torch::kInt64));
    archive.write("global_batch", torch::tensor(state.global_batch, torch::kInt64));
    archive.write("metrics", TextTensor(state.metrics.dump()));
    archive.write("input", TextTensor(state.input.dump(
                               -1, ' ', false, nlohmann::json::error_handler_t::replace)));
    archive.save_to(out);
  } catch (const c10::Error& e) {
    return Status::Internal(std::string("serializing checkpoint: ") + e.what_without_backtrace());
  }
  std::string bytes = out.str();
  KILN_RETURN_IF_ERROR(WriteFileAtomic(path, bytes));
  return SavedCheckpoint{path, static_cast<int64_t>(bytes.size()), Sha256Hex(bytes)};
}

namespace {

// Reads the archive at `path`; restores the model, and the optimizer when given.
Result<CheckpointState> Load(const std::string& path, torch::nn::Module* model,
                             torch::optim::Optimizer* optimizer, torch::Device device) {
  try {
    torch::serialize::InputArchive archive;
    // Every tensor lands on `device`, whichever device wrote it: a GPU run's checkpoint loads on
    // a CPU-only host (kiln-predict), and a CPU run's resumes on a GPU.
    archive.load_from(path, device);
    if (model != nullptr) {
      torch::serialize::InputArchive model_archive;
      archive.read("model", model_archive);
      model->load(model_archive);
    }
    if (optimizer != nullptr) {
      torch::serialize::InputArchive optimizer_archive;
      archive.read("optimizer", optimizer_archive);
      optimizer->load(optimizer_archive);
    }
    torch::Tensor step, epoch, world, metrics;
    archive.read("step", step);
    archive.read("epoch", epoch);
    archive.read("world_size", world);
    archive.read("metrics", metrics);
    CheckpointState state;
    state.step = step.item<int64_t>();
    state.epoch = epoch.item<int64_t>();
    state.world_size = world.item<int64_t>();
    torch::Tensor global_batch;
    if (archive.try_read("global_batch", global_batch)) state.global_batch = global_batch.item<int64_t>();
    state.metrics = nlohmann::json::parse(TensorText(metrics), nullptr, false);
    if (state.metrics.is_discarded()) state.metrics = nlohmann::json::object();
    torch::Tensor input;
    if (archive.try_read("input", input)) {
      state.input = nlohmann::json::parse(TensorText(input), nullptr, false);
      if (!state.input.is_object()) state.input = nlohmann::json::object();
    }
    return state;
  } catch (const c10::Error& e) {
    return Status::InvalidArgument("cannot load checkpoint " + path + ": " +
                                   e.what_without_backtrace());
  }
}

}  // namespace

Result<CheckpointState> ReadCheckpointState(const std::string& path) {
  return Load(path, nullptr, nullptr, torch::kCPU);
}

Result<CheckpointState> LoadModelWeights(const std::string& path, torch::nn::Module& model) {
  return Load(path, &model, nullptr, torch::kCPU);
}

Result<CheckpointState> LoadCheckpoint(const std::string& path, torch::nn::Module& model,
                                       torch::optim::Optimizer& optimizer,
                                       torch::Device device) {
  return Load(path, &model, &optimizer, device);
}

}  // namespace kiln::train
