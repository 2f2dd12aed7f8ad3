// Reads fields of a JSON object with path-aware, collected errors: the building block of every
// validator in kiln (job specs here, protocol bodies in protocol/). Never throws.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>


namespace kiln {

struct FieldError {
  std::string field;    // dotted path, e.g. "train.optimizer.lr"
  std::string message;  // what was wrong and what is allowed
  std::string ToString() const { return field + ": " + message; }
};

class JsonFieldReader {
 public:
  // `object` must outlive the reader. `path` is the dotted prefix of this object ("" for the root).
  JsonFieldReader(const nlohmann::json& object, std::string path, std::vector<FieldError>* errors);

  // Each getter leaves *out unchanged when the field is absent and not required, and records an
  // error when it is present with the wrong type or out of range.
  void Int(const char* key, int64_t* out, bool required, int64_t min, int64_t max);
  void Int(const char* key, int* out, bool required, int64_t min, int64_t max);
  void UInt(const char* key, uint64_t* out, bool required);
  void Double(const char* key, double* out, bool required, double min_exclusive, double max);
  void String(const char* key, std::string* out, bool required);
  void Bool(const char* key, bool* out, bool required);
  void StringList(const char* key, std::vector<std::string>* out, bool required);
  void Enum(const char* key, std::string* out, bool required,
            std::initializer_list<const char*> allowed);
  void IntList(const char* key, std::vector<int>* out, bool required, int64_t min, int64_t max);
  // Returns a reader for a nested object, or nullptr-equivalent (valid()==false) if absent/invalid.
  JsonFieldReader Object(const char* key, bool required);
  // Records an error for every key not in `known`.
  void RejectUnknown(std::initializer_list<const char*> known);

  bool valid() const { return object_ != nullptr; }
  bool Has(const char* key) const;
  // The raw value of a present key (check Has first), for fields with several accepted forms.
  const nlohmann::json& Raw(const char* key) const { return object_->at(key); }
  std::string PathOf(const char* key) const;
  void AddError(const std::string& field, const std::string& message);

 private:
  JsonFieldReader(std::string path, std::vector<FieldError>* errors);
  const nlohmann::json* Find(const char* key, bool required);
  const nlohmann::json* object_;
  std::string path_;
  std::vector<FieldError>* errors_;
};

// 1..max_length characters of letters, digits, '-', '_' and '.': names that are safe in paths,
// logs and tables (job names, user names).
bool IsValidName(const std::string& name, size_t max_length);

// Deepest nesting of arrays and objects in JSON text, found by a scan that skips strings. Checked
// before parsing untrusted text: nlohmann parses iteratively but copies values recursively, so a
// deeply nested document could overflow the stack later.
int JsonNestingDepth(const std::string& text);
constexpr int kMaxJsonDepth = 64;

// "integer", "string", ... as users would name the JSON type.
std::string JsonTypeName(const nlohmann::json& value);

}  // namespace kiln
