#include "common/json_fields.h"

#include <cctype>

#include <algorithm>
#include <sstream>

namespace kiln {

using nlohmann::json;

std::string JsonTypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "unknown";
  }
}

int JsonNestingDepth(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    else if (c == ']' || c == '}') --depth;
  }
  return deepest;
}

JsonFieldReader::JsonFieldReader(const json& object, std::string path,
                                 std::vector<FieldError>* errors)
    : object_(&object), path_(std::move(path)), errors_(errors) {}

JsonFieldReader::JsonFieldReader(std::string path, std::vector<FieldError>* errors)
    : object_(nullptr), path_(std::move(path)), errors_(errors) {}

std::string JsonFieldReader::PathOf(const char* key) const {
  return path_.empty() ? std::string(key) : path_ + "." + key;
}

void JsonFieldReader::AddError(const std::string& field, const std::string& message) {
  errors_->push_back({field, message});
}

bool JsonFieldReader::Has(const char* key) const {
  return object_ != nullptr && object_->is_object() && object_->contains(key);
}

const json* JsonFieldReader::Find(const char* key, bool required) {
  if (object_ == nullptr) return nullptr;
  auto it = object_->find(key);
  if (it == object_->end()) {
    if (required) AddError(PathOf(key), "is required");
    return nullptr;
  }
  return &*it;
}

void JsonFieldReader::Int(const char* key, int64_t* out, bool required, int64_t min, int64_t max) {
  const json* v = Find(key, required);
  if (v == nullptr) return;
  if (!v->is_number_integer()) {
    AddError(PathOf(key), "must be an integer, got " + JsonTypeName(*v) + " " + v->dump());
    return;
  }
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    AddError(PathOf(key), "must be <= " + std::to_string(max) + ", got " + v->dump());
    return;
  }
  int64_t value = v->get<int64_t>();
  if (value < min) {
    AddError(PathOf(key), "must be >= " + std::to_string(min) + ", got " + std::to_string(value));
  } else if (value > max) {
    AddError(PathOf(key), "must be <= " + std::to_string(max) + ", got " + std::to_string(value));
  } else {
    *out = value;
  }
}

void JsonFieldReader::Int(const char* key, int* out, bool required, int64_t min, int64_t max) {
  int64_t wide = *out;
  Int(key, &wide, required, min, max);
  *out = static_cast<int>(wide);
}

void JsonFieldReader::UInt(const char* key, uint64_t* out, bool required) {
  const json* v = Find(key, required);
  if (v == nullptr) return;
  if (!v->is_number_integer() || (v->is_number_integer() && !v->is_number_unsigned() &&
                                  v->get<int64_t>() < 0)) {
    AddError(PathOf(key), "must be a non-negative integer, got " + v->dump());
    return;
  }
  *out = v->get<uint64_t>();
}

void JsonFieldReader::Double(const char* key, double* out, bool required, double min_exclusive,
                             double max) {
  const json* v = Find(key, required);
  if (v == nullptr) return;
  if (!v->is_number()) {
    AddError(PathOf(key), "must be a number, got " + JsonTypeName(*v) + " " + v->dump());
    return;
  }
  double value = v->get<double>();
  std::ostringstream bound;
  if (!(value > min_exclusive)) {
    bound << min_exclusive;
    AddError(PathOf(key), "must be > " + bound.str() + ", got " + v->dump());
  } else if (value > max) {
    bound << max;
    AddError(PathOf(key), "must be <= " + bound.str() + ", got " + v->dump());
  } else {
    *out = value;
  }
}

void JsonFieldReader::String(const char* key, std::string* out, bool required) {
  const json* v = Find(key, required);
  if (v == nullptr) return;
  if (!v->is_string()) {
    AddError(PathOf(key), "must be a string, got " + JsonTypeName(*v) + " " + v->dump());
    return;
  }
  *out = v->get<std::string>();
}

void JsonFieldReader::Bool(const char* key, bool* out, bool required) {
  const json* v = Find(key, required);
  if (v == nullptr) return;
  if (!v->is_boolean()) {
    AddError(PathOf(key), "must be true or false, got " + JsonTypeName(*v) + " " + v->dump());
    return;
  }
  *out = v->get<bool>();
}

void JsonFieldReader::StringList(const char* key, std::vector<std::string>* out, bool required) {
  const json* v = Find(key, required);
  if (v == nullptr) return;
  if (!v->is_array()) {
    AddError(PathOf(key), "must be an array of strings, got " + JsonTypeName(*v));
    return;
  }
  std::vector<std::string> values;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      AddError(PathOf(key) + "[" + std::to_string(i) + "]", "must be a string, got " +
                                                              JsonTypeName((*v)[i]));
      return;
    }
    values.push_back((*v)[i].get<std::string>());
  }
  *out = std::move(values);
}

void JsonFieldReader::Enum(const char* key, std::string* out, bool required,
                           std::initializer_list<const char*> allowed) {
  const json* v = Find(key, required);
  if (v == nullptr) return;
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string("\"") + a + "\"";
  if (v->is_string()) {
    for (const char* a : allowed) {
      if (v->get<std::string>() == a) {
        *out = a;
        return;
      }
    }
  }
  AddError(PathOf(key), "must be one of " + list + ", got " + v->dump());
}

void JsonFieldReader::IntList(const char* key, std::vector<int>* out, bool required, int64_t min,
                              int64_t max) {
  const json* v = Find(key, required);
  if (v == nullptr) return;
  if (!v->is_array()) {
    AddError(PathOf(key), "must be an array of integers, got " + JsonTypeName(*v));
    return;
  }
  std::vector<int> values;
  bool good = true;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& e = (*v)[i];
    std::string where = PathOf(key) + "[" + std::to_string(i) + "]";
    if (!e.is_number_integer()) {
      AddError(where, "must be an integer, got " + JsonTypeName(e) + " " + e.dump());
      good = false;
    } else if (e.get<int64_t>() < min || e.get<int64_t>() > max) {
      AddError(where, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                          ", got " + e.dump());
      good = false;
    } else {
      values.push_back(static_cast<int>(e.get<int64_t>()));
    }
  }
  if (good) *out = std::move(values);
}

JsonFieldReader JsonFieldReader::Object(const char* key, bool required) {
  const json* v = Find(key, required);
  if (v == nullptr) return JsonFieldReader(PathOf(key), errors_);
  if (!v->is_object()) {
    AddError(PathOf(key), "must be an object, got " + JsonTypeName(*v));
    return JsonFieldReader(PathOf(key), errors_);
  }
  return JsonFieldReader(*v, PathOf(key), errors_);
}

void JsonFieldReader::RejectUnknown(std::initializer_list<const char*> known) {
  if (object_ == nullptr || !object_->is_object()) return;
  std::string list;
  for (const char* k : known) list += (list.empty() ? "" : ", ") + std::string(k);
  for (auto it = object_->begin(); it != object_->end(); ++it) {
    bool found = false;
    for (const char* k : known) found = found || it.key() == k;
    if (!found) AddError(PathOf(it.key().c_str()), "unknown field; allowed here: " + list);
  }
}

bool IsValidName(const std::string& name, size_t max_length) {
  if (name.empty() || name.size() > max_length) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

}  // namespace kiln
