#include <catch2/catch.hpp>

#include "common/job_spec.h"

using kiln::ParseJobSpec;
using kiln::ParseJobSpecText;
using nlohmann::json;

namespace {

json ValidSpec() {
  return json::parse(R"({"name": "fashion-mnist-mlp",
    "resources": {"ranks": 2, "gpus_per_rank": 0},
    "model": {"type": "mlp", "hidden": [256, 128], "activation": "relu"},
    "data": {"type": "fashion-mnist", "path": "/usr/share/datasets/fashion-mnist"},
    "train": {"epochs": 5, "batch_size": 64, "loss": "cross_entropy",
              "optimizer": {"type": "adam", "lr": 0.001}, "seed": 1},
    "checkpoint": {"every_steps": 500, "keep_last": 3},
    "max_retries": 2})");
}

std::vector<std::string> Errors(const json& spec) {
  return kiln::SpecErrorStrings(ParseJobSpec(spec).errors);
}

bool HasErrorOn(const std::vector<std::string>& errors, const std::string& field) {
  for (const auto& e : errors) {
    if (e.rfind(field + ":", 0) == 0) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("the issue's Fashion-MNIST spec is accepted as written") {
  auto result = ParseJobSpec(ValidSpec());
  REQUIRE(result.ok());
  CHECK(result.spec.name == "fashion-mnist-mlp");
  CHECK(result.spec.resources.ranks == 2);
  CHECK(result.spec.model.hidden == std::vector<int>{256, 128});
  CHECK(result.spec.InputFeatures() == 784);
  CHECK(result.spec.OutputUnits() == 10);
  CHECK(result.spec.train.optimizer.lr == Approx(0.001));
  CHECK(result.spec.checkpoint.every_steps == 500);
  CHECK(result.spec.max_retries == 2);
}

TEST_CASE("an out-of-range field is named with what was wrong and what is allowed") {
  json spec = ValidSpec();
  spec["resources"]["ranks"] = 0;
  CHECK(Errors(spec) == std::vector<std::string>{"resources.ranks: must be >= 1, got 0"});
}

TEST_CASE("every error of a spec is reported at once") {
  json spec = ValidSpec();
  spec["resources"]["ranks"] = 0;
  spec["train"]["optimizer"]["lr"] = -1;
  spec["train"]["loss"] = "hinge";
  spec["model"]["activation"] = "swishy";
  spec.erase("data");
  auto errors = Errors(spec);
  CHECK(errors.size() == 5);
  CHECK(HasErrorOn(errors, "resources.ranks"));
  CHECK(HasErrorOn(errors, "train.optimizer.lr"));
  CHECK(HasErrorOn(errors, "train.loss"));
  CHECK(HasErrorOn(errors, "model.activation"));
  CHECK(HasErrorOn(errors, "data"));
}

TEST_CASE("unknown fields are errors that list the allowed ones") {
  json spec = ValidSpec();
  spec["train"]["epoch"] = 3;
  spec["colour"] = "blue";
  auto errors = Errors(spec);
  REQUIRE(errors.size() == 2);
  CHECK(HasErrorOn(errors, "train.epoch"));
  CHECK(errors[0].find("allowed here") != std::string::npos);
}

TEST_CASE("wrong JSON types are named with the type found") {
  json spec = ValidSpec();
  spec["train"]["epochs"] = "five";
  spec["model"]["hidden"] = json::array({256, "wide"});
  auto errors = Errors(spec);
  CHECK(HasErrorOn(errors, "train.epochs"));
  CHECK(HasErrorOn(errors, "model.hidden[1]"));
  CHECK(errors[0].find("string") != std::string::npos);
}

TEST_CASE("the seed's synthetic binary example validates, with a sigmoid output of 1 unit") {
  auto result = ParseJobSpec(json::parse(R"({"name": "seed",
    "resources": {"ranks": 1},
    "model": {"type": "mlp", "hidden": [64, 64], "activation": "relu",
              "output_units": 1, "output_activation": "sigmoid"},
    "data": {"type": "synthetic", "features": 100, "classes": 2},
    "train": {"epochs": 1, "batch_size": 32, "loss": "binary_cross_entropy",
              "optimizer": {"type": "adam", "lr": 0.001}}})"));
  REQUIRE(result.ok());
  CHECK(result.spec.OutputUnits() == 1);
  CHECK(result.spec.InputFeatures() == 100);
}

TEST_CASE("binary cross-entropy on a 10-class data set is refused with the fix") {
  json spec = ValidSpec();
  spec["train"]["loss"] = "binary_cross_entropy";
  auto errors = Errors(spec);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("use \"cross_entropy\"") != std::string::npos);
}

TEST_CASE("momentum on adam is refused, on sgd it is accepted") {
  json spec = ValidSpec();
  spec["train"]["optimizer"]["momentum"] = 0.9;
  CHECK(HasErrorOn(Errors(spec), "train.optimizer.momentum"));
  spec["train"]["optimizer"]["type"] = "sgd";
  CHECK(Errors(spec).empty());
}

TEST_CASE("text that is not JSON is one error on the document") {
  auto result = ParseJobSpecText("{\"name\": ");
  REQUIRE(result.errors.size() == 1);
  CHECK(result.errors[0].field == "(document)");
  CHECK(ParseJobSpecText("[1,2]").errors[0].message.find("object") != std::string::npos);
}

TEST_CASE("invalid JSON is reported with its line and column and what the parser expected") {
  auto result = ParseJobSpecText("{\n  \"name\": \"x\",\n  \"ranks\": 2,\n}\n");
  REQUIRE(result.errors.size() == 1);
  const std::string message = result.errors[0].message;
  INFO(message);
  CHECK(message.rfind("is not valid JSON: line 4, column 1: ", 0) == 0);
  CHECK(message.find("unexpected '}'") != std::string::npos);
  CHECK(message.find("json.exception") == std::string::npos);
  auto cut = ParseJobSpecText("{\"name\": ");
  CHECK(cut.errors[0].message.find("line 1, column ") != std::string::npos);
}

TEST_CASE("job names are restricted to a safe character set") {
  json spec = ValidSpec();
  spec["name"] = "../../etc/passwd";
  CHECK(HasErrorOn(Errors(spec), "name"));
  spec["name"] = "";
  CHECK(HasErrorOn(Errors(spec), "name"));
}

TEST_CASE("checkpoint retention and storage options are validated") {
  json spec = ValidSpec();
  spec["checkpoint"]["keep_best"] = {{"count", 2}, {"metric", "test_loss"}};
  spec["checkpoint"]["storage"] = {{"type", "shared_fs"}, {"path", "/mnt/shared/kiln"}};
  auto ok = ParseJobSpec(spec);
  REQUIRE(ok.ok());
  CHECK(ok.spec.checkpoint.keep_best == 2);
  CHECK(ok.spec.checkpoint.best_mode == "min");  // lower loss is better unless told otherwise
  CHECK(ok.spec.checkpoint.storage_path == "/mnt/shared/kiln");
  spec["checkpoint"]["storage"] = {{"type", "shared_fs"}};
  CHECK(HasErrorOn(Errors(spec), "checkpoint.storage.path"));
  spec["checkpoint"]["storage"] = {{"type", "shared_fs"}, {"path", "relative/dir"}};
  CHECK(HasErrorOn(Errors(spec), "checkpoint.storage.path"));
  spec["checkpoint"]["storage"] = {{"type", "s3"}};
  CHECK(HasErrorOn(Errors(spec), "checkpoint.storage.type"));
}

TEST_CASE("a cnn needs conv blocks and square images, with odd kernels") {
  json spec = ValidSpec();
  spec["model"] = {{"type", "cnn"},
                   {"conv", {{{"channels", 32}, {"kernel", 5}, {"pool", 2}},
                             {{"channels", 64}, {"kernel", 5}, {"pool", 2}}}},
                   {"hidden", {1024}}};
  auto ok = ParseJobSpec(spec);
  REQUIRE(ok.ok());
  CHECK(ok.spec.model.conv.size() == 2);
  CHECK(ok.spec.ImageSide() == 28);
  spec["model"]["conv"][1]["kernel"] = 4;
  CHECK(HasErrorOn(Errors(spec), "model.conv[1].kernel"));
  spec["model"].erase("conv");
  CHECK(HasErrorOn(Errors(spec), "model.conv"));
  json mlp = ValidSpec();
  mlp["model"]["conv"] = json::array({{{"channels", 8}}});
  CHECK(HasErrorOn(Errors(mlp), "model.conv"));
  json synthetic = ValidSpec();
  synthetic["model"] = {{"type", "cnn"}, {"conv", {{{"channels", 4}}}}};
  synthetic["data"] = {{"type", "synthetic"}, {"features", 50}, {"classes", 10}};
  CHECK(HasErrorOn(Errors(synthetic), "model.type"));
}

TEST_CASE("optimizers, schedules, clipping and csv data are validated") {
  json spec = ValidSpec();
  spec["train"]["optimizer"] = {{"type", "sgd"}, {"lr", 0.1}, {"momentum", 0.9}, {"nesterov", true}};
  spec["train"]["lr_schedule"] = {{"type", "cosine"}, {"warmup_steps", 100}, {"min_lr", 0.001}};
  spec["train"]["grad_clip_norm"] = 1.0;
  REQUIRE(ParseJobSpec(spec).ok());
  spec["train"]["optimizer"] = {{"type", "adamw"}, {"lr", 0.001}, {"nesterov", true}};
  CHECK(HasErrorOn(Errors(spec), "train.optimizer.nesterov"));
  spec["train"]["optimizer"] = {{"type", "sgd"}, {"lr", 0.1}, {"nesterov", true}};
  CHECK(HasErrorOn(Errors(spec), "train.optimizer.nesterov"));  // needs momentum
  spec["train"]["optimizer"] = {{"type", "adam"}, {"lr", 0.1}};
  spec["train"]["lr_schedule"] = {{"type", "linear"}};
  CHECK(HasErrorOn(Errors(spec), "train.lr_schedule.type"));

  json csv = ValidSpec();
  csv["data"] = {{"type", "csv"}, {"path", "/data/iris.csv"}, {"label_column", "species"},
                 {"features", 4}, {"classes", 3}, {"standardize", true}, {"validation_split", 0.2}};
  auto parsed = ParseJobSpec(csv);
  REQUIRE(parsed.ok());
  CHECK(parsed.spec.data.standardize);
  CHECK(parsed.spec.InputFeatures() == 4);
  csv["data"].erase("label_column");
  CHECK(HasErrorOn(Errors(csv), "data.label_column"));
}

TEST_CASE("a csv spec needs no data.features: the names or the header say how many") {
  json csv = ValidSpec();
  csv["data"] = {{"type", "csv"}, {"path", "/data/iris.csv"}, {"label_column", "species"},
                 {"classes", 3}};
  auto from_header = ParseJobSpec(csv);
  REQUIRE(from_header.ok());
  CHECK(from_header.spec.InputFeatures() == 0);  // kiln-train reads it from the header
  csv["data"]["feature_columns"] = {"a", "b"};
  auto named = ParseJobSpec(csv);
  REQUIRE(named.ok());
  CHECK(named.spec.InputFeatures() == 2);
  csv["data"]["features"] = 3;
  auto errors = Errors(csv);
  REQUIRE(HasErrorOn(errors, "data.features"));
  csv["data"].erase("feature_columns");
  csv["model"] = {{"type", "cnn"}, {"conv", {{{"channels", 8}, {"kernel", 3}, {"pool", 2}}}}};
  csv["data"].erase("features");
  errors = Errors(csv);
  std::string all;
  for (const auto& e : errors) all += e + "\n";
  INFO(all);
  CHECK(HasErrorOn(errors, "data.features"));  // a cnn needs the image size up front

  json mse = ValidSpec();
  mse["train"]["loss"] = "mse";
  CHECK(HasErrorOn(Errors(mse), "train.loss"));  // fashion-mnist is not a regression
  mse["data"] = {{"type", "synthetic"}, {"task", "regression"}, {"features", 8}};
  auto regression = ParseJobSpec(mse);
  REQUIRE(regression.ok());
  CHECK(regression.spec.OutputUnits() == 1);
}

TEST_CASE("a torchscript model names its file by absolute path and takes no layer fields") {
  json spec = ValidSpec();
  spec["model"] = {{"type", "torchscript"}, {"path", "/models/net.pt"}};
  REQUIRE(ParseJobSpec(spec).ok());
  spec["model"]["path"] = "net.pt";
  CHECK(HasErrorOn(Errors(spec), "model.path"));
  spec["model"] = {{"type", "torchscript"}, {"path", "/models/net.pt"}, {"hidden", {10}}};
  CHECK(HasErrorOn(Errors(spec), "model.hidden"));
  spec["model"] = {{"type", "torchscript"}};
  CHECK(HasErrorOn(Errors(spec), "model.path"));
}

TEST_CASE("scheduling fields: priority, time_limit, depends_on, placement") {
  auto spec = ValidSpec();
  spec["priority"] = 5;
  spec["time_limit"] = "1h30m";
  spec["depends_on"] = {3, 4};
  spec["resources"] = {{"ranks", 4}, {"ranks_per_node", 2}, {"memory_per_rank", "2GiB"},
                       {"cpus_per_rank", 2}, {"placement", "spread"}, {"labels", {"nvme", "ib"}}};
  auto result = kiln::ParseJobSpec(spec);
  REQUIRE(result.ok());
  CHECK(result.spec.priority == 5);
  CHECK(result.spec.time_limit_s == 5400);
  CHECK(result.spec.depends_on == std::vector<int64_t>{3, 4});
  CHECK(result.spec.resources.memory_per_rank == (2ll << 30));
  CHECK(result.spec.resources.labels == std::vector<std::string>{"ib", "nvme"});
}

TEST_CASE("scheduling fields are checked and named") {
  auto spec = ValidSpec();
  spec["time_limit"] = "soon";
  spec["depends_on"] = {0};
  spec["resources"]["ranks"] = 3;
  spec["resources"]["ranks_per_node"] = 2;
  spec["resources"]["memory_per_rank"] = "lots";
  auto errors = Errors(spec);
  CHECK(errors.size() == 4);
  CHECK(errors[0] == "resources.ranks_per_node: must divide ranks (3), got 2");
  CHECK(errors[1].rfind("resources.memory_per_rank: must be bytes or a size", 0) == 0);
  CHECK(errors[2].rfind("time_limit: must be seconds", 0) == 0);
  CHECK(errors[3] == "depends_on[0]: must be a job id (an integer >= 1), got 0");
}

TEST_CASE("dropout follows hidden layers and is bounded") {
  auto spec = ValidSpec();
  spec["model"]["dropout"] = 0.2;
  CHECK(kiln::ParseJobSpec(spec).ok());
  spec["model"]["dropout"] = 0.99;
  CHECK(Errors(spec).front().rfind("model.dropout:", 0) == 0);
  spec["model"]["dropout"] = 0.2;
  spec["model"].erase("hidden");
  CHECK(Errors(spec) == std::vector<std::string>{
                           "model.dropout: needs hidden layers (it follows each one); add \"hidden\""});
}

TEST_CASE("a spec cannot name kiln's account labels") {
  auto spec = ValidSpec();
  spec["resources"]["labels"] = {"nvme", "unix-any:root"};
  auto errors = Errors(spec);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] ==
        "resources.labels[1]: must not contain ':' (kiln's account labels use it), "
        "got \"unix-any:root\"");
}
