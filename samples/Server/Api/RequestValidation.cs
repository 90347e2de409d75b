using System.Collections.Generic;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Llama.Compiled.Server.Api;

/// <summary>OpenAI's documented ranges and shapes, checked before anything is queued; each failure is a 400 naming the field.</summary>
internal static class RequestValidation
{
    public const int MaxStopSequences = 16;

    /// <summary>The sampling fields both completion endpoints share.</summary>
    public readonly record struct Sampling(float? Temperature, float? TopP, long? Seed, float? FrequencyPenalty, float? PresencePenalty,
        int? TopK, float? MinP, float? RepetitionPenalty);

    public static void CheckSampling(Sampling s)
    {
        if (s.Temperature is float t && !(t >= 0f && t <= 2f))
            throw ApiException.BadRequest($"Invalid 'temperature': {t}. Expected a number from 0 to 2.", "temperature", "invalid_value");
        if (s.TopP is float p && !(p >= 0f && p <= 1f))
            throw ApiException.BadRequest($"Invalid 'top_p': {p}. Expected a number from 0 to 1.", "top_p", "invalid_value");
        if (s.FrequencyPenalty is float f && !(f >= -2f && f <= 2f))
            throw ApiException.BadRequest($"Invalid 'frequency_penalty': {f}. Expected a number from -2 to 2.", "frequency_penalty", "invalid_value");
        if (s.PresencePenalty is float r && !(r >= -2f && r <= 2f))
            throw ApiException.BadRequest($"Invalid 'presence_penalty': {r}. Expected a number from -2 to 2.", "presence_penalty", "invalid_value");
        if (s.TopK is int k && k < 0)
            throw ApiException.BadRequest($"Invalid 'top_k': {k}. Expected an integer >= 0.", "top_k", "invalid_value");
        if (s.MinP is float m && !(m >= 0f && m <= 1f))
            throw ApiException.BadRequest($"Invalid 'min_p': {m}. Expected a number from 0 to 1.", "min_p", "invalid_value");
        if (s.RepetitionPenalty is float rp && !(rp > 0f && float.IsFinite(rp)))
            throw ApiException.BadRequest($"Invalid 'repetition_penalty': {rp}. Expected a number > 0.", "repetition_penalty", "invalid_value");
    }

    public static SamplingOptions ToSamplingOptions(Sampling s) => new()
    {
        Temperature = s.Temperature ?? 1f,
        TopP = s.TopP ?? 1f,
        Seed = s.Seed is long seed ? unchecked((ulong)seed) : null,
        FrequencyPenalty = s.FrequencyPenalty ?? 0f,
        PresencePenalty = s.PresencePenalty ?? 0f,
        TopK = s.TopK ?? 0,
        MinP = s.MinP ?? 0f,
        RepetitionPenalty = s.RepetitionPenalty ?? 1f,
    };

    public static int? CheckMaxTokens(int? value, string param)
    {
        if (value is int n && n <= 0)
            throw ApiException.BadRequest($"Invalid '{param}': {n}. Expected an integer >= 1.", param, "invalid_value");
        return value;
    }

    public static void CheckN(int? n)
    {
        if (n is int count && count != 1)
            throw ApiException.BadRequest($"Invalid 'n': {count}. This server generates one choice per request (n = 1).", "n", "unsupported_value");
    }

    /// <summary>
    /// "response_format" as OpenAI defines it: <c>{"type": "text"}</c>, <c>{"type": "json_object"}</c>, or
    /// <c>{"type": "json_schema", "json_schema": {"name", "description"?, "schema"?, "strict"?}}</c>; null when absent.
    /// A json_schema without a schema is any JSON object. Strict or not, the schema is enforced (a grammar).
    /// </summary>
    public static ChatResponseFormat? ResponseFormat(JsonElement? format)
    {
        if (format is not { } element || element.ValueKind == JsonValueKind.Null)
            return null;
        if (element.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest("Invalid type for 'response_format': expected an object.", "response_format", "invalid_type");
        if (!element.TryGetProperty("type", out JsonElement type))
            throw ApiException.BadRequest("Missing required parameter: 'response_format.type'.", "response_format.type", "missing_required_parameter");
        switch (type.ValueKind == JsonValueKind.String ? type.GetString() : null)
        {
            case "text":
                return ChatResponseFormat.Text;
            case "json_object":
                return ChatResponseFormat.Json;
            case "json_schema":
                break;
            default:
                throw ApiException.BadRequest(
                    $"Invalid value: '{(type.ValueKind == JsonValueKind.String ? type.GetString() : type.GetRawText())}'. Supported values are: 'text', 'json_object', and 'json_schema'.",
                    "response_format.type", "invalid_value");
        }
        if (!element.TryGetProperty("json_schema", out JsonElement jsonSchema))
            throw ApiException.BadRequest("Missing required parameter: 'response_format.json_schema'.", "response_format.json_schema", "missing_required_parameter");
        if (jsonSchema.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest("Invalid type for 'response_format.json_schema': expected an object.", "response_format.json_schema", "invalid_type");
        if (!jsonSchema.TryGetProperty("name", out JsonElement name))
            throw ApiException.BadRequest("Missing required parameter: 'response_format.json_schema.name'.", "response_format.json_schema.name", "missing_required_parameter");
        string? nameText = name.ValueKind == JsonValueKind.String ? name.GetString() : null;
        if (string.IsNullOrEmpty(nameText) || nameText.Length > 64 || !IsSchemaName(nameText))
        {
            throw ApiException.BadRequest(
                "Invalid 'response_format.json_schema.name': expected a string of up to 64 letters, digits, underscores and dashes.",
                "response_format.json_schema.name", "invalid_value");
        }
        string? description = null;
        if (jsonSchema.TryGetProperty("description", out JsonElement descriptionElement) && descriptionElement.ValueKind != JsonValueKind.Null)
        {
            if (descriptionElement.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest("Invalid type for 'response_format.json_schema.description': expected a string.", "response_format.json_schema.description", "invalid_type");
            description = descriptionElement.GetString();
        }
        if (jsonSchema.TryGetProperty("strict", out JsonElement strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
            throw ApiException.BadRequest("Invalid type for 'response_format.json_schema.strict': expected a boolean.", "response_format.json_schema.strict", "invalid_type");
        if (!jsonSchema.TryGetProperty("schema", out JsonElement schema) || schema.ValueKind == JsonValueKind.Null)
            return ChatResponseFormat.Json;
        if (schema.ValueKind is not (JsonValueKind.Object or JsonValueKind.True))
            throw ApiException.BadRequest("Invalid type for 'response_format.json_schema.schema': expected an object.", "response_format.json_schema.schema", "invalid_type");
        return ChatResponseFormat.ForJsonSchema(schema.Clone(), nameText, description);
    }

    private static bool IsSchemaName(string name)
    {
        foreach (char c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
                return false;
        }
        return true;
    }

    /// <summary>"stop": null, a string, or an array of strings.</summary>
    public static List<string> Stop(JsonElement? stop)
    {
        var result = new List<string>();
        if (stop is not { } element || element.ValueKind == JsonValueKind.Null)
            return result;
        if (element.ValueKind == JsonValueKind.String)
        {
            result.Add(element.GetString()!);
            return result;
        }
        if (element.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest("Invalid type for 'stop': expected a string or an array of strings.", "stop", "invalid_type");
        int i = 0;
        foreach (JsonElement item in element.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"Invalid type for 'stop[{i}]': expected a string.", $"stop[{i}]", "invalid_type");
            result.Add(item.GetString()!);
            i++;
        }
        if (result.Count > MaxStopSequences)
            throw ApiException.BadRequest($"Invalid 'stop': at most {MaxStopSequences} stop sequences.", "stop", "invalid_value");
        return result;
    }

    /// <summary>The conversation: system (and developer), user and assistant messages with text content.</summary>
    public static List<ChatMessage> Messages(List<ChatMessageDto?>? messages)
    {
        if (messages is null)
            throw ApiException.BadRequest("Missing required parameter: 'messages'.", "messages", "missing_required_parameter");
        if (messages.Count == 0)
            throw ApiException.BadRequest("Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages", "empty_array");
        var result = new List<ChatMessage>(messages.Count);
        for (int i = 0; i < messages.Count; i++)
        {
            string param = $"messages[{i}]";
            ChatMessageDto message = messages[i] ?? throw ApiException.BadRequest($"Invalid type for '{param}': expected an object.", param, "invalid_type");
            ChatRole role = message.Role switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                null => throw ApiException.BadRequest($"Missing required parameter: '{param}.role'.", param + ".role", "missing_required_parameter"),
                "tool" or "function" => throw ApiException.BadRequest($"Invalid '{param}.role': '{message.Role}' messages are not supported (this server has no tools).", param + ".role", "unsupported_value"),
                _ => throw ApiException.BadRequest($"Invalid value for '{param}.role': '{message.Role}'. Supported values are: 'system', 'developer', 'user' and 'assistant'.", param + ".role", "invalid_value"),
            };
            if (message.ToolCalls is { ValueKind: not JsonValueKind.Null })
                throw ApiException.NotSupported(param + ".tool_calls");
            result.Add(new ChatMessage(role, Content(message.Content, param + ".content")));
        }
        return result;
    }

    /// <summary>"content": a string, or an array of text parts (joined by newlines).</summary>
    private static string Content(JsonElement? content, string param)
    {
        if (content is not { } element || element.ValueKind == JsonValueKind.Null)
            throw ApiException.BadRequest($"Missing required parameter: '{param}'.", param, "missing_required_parameter");
        if (element.ValueKind == JsonValueKind.String)
            return element.GetString()!;
        if (element.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest($"Invalid type for '{param}': expected a string or an array of content parts.", param, "invalid_type");
        var text = new StringBuilder();
        int i = 0;
        foreach (JsonElement part in element.EnumerateArray())
        {
            string partParam = $"{param}[{i}]";
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"Invalid '{partParam}': expected an object with a 'type'.", partParam, "invalid_type");
            if (type.GetString() != "text")
                throw ApiException.BadRequest($"Invalid '{partParam}.type': '{type.GetString()}' content is not supported; only 'text'.", partParam + ".type", "unsupported_value");
            if (!part.TryGetProperty("text", out JsonElement partText) || partText.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"Invalid '{partParam}.text': expected a string.", partParam + ".text", "invalid_type");
            if (i > 0)
                text.Append('\n');
            text.Append(partText.GetString());
            i++;
        }
        return text.ToString();
    }

    /// <summary>"prompt" of /v1/completions: a string, or an array of one string or of token ids.</summary>
    public static (string? Text, int[]? Ids) Prompt(JsonElement? prompt)
    {
        if (prompt is not { } element || element.ValueKind == JsonValueKind.Null)
            throw ApiException.BadRequest("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter");
        if (element.ValueKind == JsonValueKind.String)
            return (element.GetString()!, null);
        if (element.ValueKind == JsonValueKind.Array)
        {
            int length = element.GetArrayLength();
            if (length == 1 && element[0].ValueKind == JsonValueKind.String)
                return (element[0].GetString()!, null);
            if (length > 0 && element[0].ValueKind == JsonValueKind.String)
                throw ApiException.BadRequest("Invalid 'prompt': this server completes one prompt per request.", "prompt", "unsupported_value");
            var ids = new int[length];
            for (int i = 0; i < length; i++)
            {
                if (element[i].ValueKind != JsonValueKind.Number || !element[i].TryGetInt32(out ids[i]))
                    throw ApiException.BadRequest($"Invalid type for 'prompt[{i}]': expected a string or token ids (integers).", $"prompt[{i}]", "invalid_type");
            }
            if (length == 0)
                throw ApiException.BadRequest("Invalid 'prompt': empty array.", "prompt", "empty_array");
            return (null, ids);
        }
        throw ApiException.BadRequest("Invalid type for 'prompt': expected a string or an array.", "prompt", "invalid_type");
    }

    /// <summary>"input" of /v1/embeddings: a string or an array of strings.</summary>
    public static List<string> Input(JsonElement? input)
    {
        if (input is not { } element || element.ValueKind == JsonValueKind.Null)
            throw ApiException.BadRequest("Missing required parameter: 'input'.", "input", "missing_required_parameter");
        var result = new List<string>();
        if (element.ValueKind == JsonValueKind.String)
        {
            result.Add(element.GetString()!);
        }
        else if (element.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (JsonElement item in element.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String)
                    throw ApiException.BadRequest($"Invalid type for 'input[{i}]': expected a string.", $"input[{i}]", "invalid_type");
                result.Add(item.GetString()!);
                i++;
            }
            if (result.Count == 0)
                throw ApiException.BadRequest("Invalid 'input': empty array. Expected an array with minimum length 1.", "input", "empty_array");
        }
        else
        {
            throw ApiException.BadRequest("Invalid type for 'input': expected a string or an array of strings.", "input", "invalid_type");
        }
        for (int i = 0; i < result.Count; i++)
        {
            if (result[i].Length == 0)
                throw ApiException.BadRequest($"Invalid 'input[{i}]': empty string.", result.Count == 1 && element.ValueKind == JsonValueKind.String ? "input" : $"input[{i}]", "invalid_value");
        }
        return result;
    }
}
