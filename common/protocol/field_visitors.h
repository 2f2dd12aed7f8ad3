// Generic JSON encoding/decoding for message structs. A message declares its fields once:
//   template <class V> void Fields(V& v) { v("job_id", job_id); v("lines", lines); }
// and gets ToJson/FromJson from here. Decoding checks each field's presence and type and names
// the field in its error ("body.job_id: must be an integer, got string"). Never throws.
// A std::optional field may be absent (and is left out when empty): new fields are added as
// optional, so older peers stay compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/json_fields.h"

namespace kiln::protocol {

struct FieldEncoder;

template <typename T, typename = void>
struct HasFields : std::false_type {};
template <typename T>
struct HasFields<T, std::void_t<decltype(std::declval<T&>().Fields(
                        std::declval<FieldEncoder&>()))>> : std::true_type {};

struct FieldEncoder {
  nlohmann::json* out;

  template <typename T>
  void operator()(const char* name, const T& value) {
    (*out)[name] = Encode(value);
  }
  template <typename T>
  void operator()(const char* name, const std::optional<T>& value) {
    if (value) (*out)[name] = Encode(*value);
  }

  template <typename T>
  static nlohmann::json Encode(const T& value) {
    if constexpr (HasFields<T>::value) {
      nlohmann::json j = nlohmann::json::object();
      FieldEncoder enc{&j};
      const_cast<T&>(value).Fields(enc);
      return j;
    } else if constexpr (std::is_same_v<T, nlohmann::json>) {
      return value;
    } else {
      return nlohmann::json(value);
    }
  }

  template <typename T>
  static nlohmann::json Encode(const std::vector<T>& values) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& v : values) a.push_back(Encode(v));
    return a;
  }
};

struct FieldDecoder {
  const nlohmann::json* in;
  std::string path;
  std::vector<FieldError>* errors;

  template <typename T>
  void operator()(const char* name, std::optional<T>& value) {
    auto it = in->find(name);
    if (it == in->end() || it->is_null()) {
      value.reset();
      return;
    }
    T decoded{};
    Decode(*it, path + "." + name, errors, &decoded);
    value = std::move(decoded);
  }

  template <typename T>
  void operator()(const char* name, T& value) {
    std::string field = path + "." + name;
    auto it = in->find(name);
    if (it == in->end()) {
      errors->push_back({field, "is required"});
      return;
    }
    Decode(*it, field, errors, &value);
  }

  static void Decode(const nlohmann::json& j, const std::string& field,
                     std::vector<FieldError>* errors, nlohmann::json* out) {
    (void)field;
    (void)errors;
    *out = j;
  }
  static void Decode(const nlohmann::json& j, const std::string& field,
                     std::vector<FieldError>* errors, std::string* out) {
    if (!j.is_string()) return Wrong(j, field, "a string", errors);
    *out = j.get<std::string>();
  }
  static void Decode(const nlohmann::json& j, const std::string& field,
                     std::vector<FieldError>* errors, bool* out) {
    if (!j.is_boolean()) return Wrong(j, field, "a boolean", errors);
    *out = j.get<bool>();
  }
  static void Decode(const nlohmann::json& j, const std::string& field,
                     std::vector<FieldError>* errors, double* out) {
    if (!j.is_number()) return Wrong(j, field, "a number", errors);
    *out = j.get<double>();
  }
  template <typename T, typename std::enable_if_t<std::is_integral_v<T>, int> = 0>
  static void Decode(const nlohmann::json& j, const std::string& field,
                     std::vector<FieldError>* errors, T* out) {
    if (!j.is_number_integer()) return Wrong(j, field, "an integer", errors);
    *out = j.get<T>();
  }
  template <typename T, typename std::enable_if_t<HasFields<T>::value, int> = 0>
  static void Decode(const nlohmann::json& j, const std::string& field,
                     std::vector<FieldError>* errors, T* out) {
    if (!j.is_object()) return Wrong(j, field, "an object", errors);
    FieldDecoder dec{&j, field, errors};
    out->Fields(dec);
  }
  template <typename T>
  static void Decode(const nlohmann::json& j, const std::string& field,
                     std::vector<FieldError>* errors, std::vector<T>* out) {
    if (!j.is_array()) return Wrong(j, field, "an array", errors);
    out->clear();
    out->resize(j.size());
    for (size_t i = 0; i < j.size(); ++i) {
      Decode(j[i], field + "[" + std::to_string(i) + "]", errors, &(*out)[i]);
    }
  }

  static void Wrong(const nlohmann::json& j, const std::string& field, const char* expected,
                    std::vector<FieldError>* errors) {
    errors->push_back({field, std::string("must be ") + expected + ", got " + JsonTypeName(j)});
  }
};

}  // namespace kiln::protocol
