using System.Collections.Generic;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Llama.Compiled.Server.Api;

// The OpenAI wire format (https://platform.openai.com/docs/api-reference), as the official clients read and write it.
// Property names are snake_case through ServerJsonContext's naming policy. Fields that take one of several JSON
// types (content, stop, prompt, input) are JsonElement and checked by RequestValidation; everything else is typed,
// so a value of the wrong type fails deserialization and becomes a 400 naming the field. Unknown fields are ignored.

/// <summary>POST /v1/chat/completions.</summary>
internal sealed class ChatCompletionRequest
{
    public List<ChatMessageDto?>? Messages { get; set; }
    public string? Model { get; set; }
    public float? Temperature { get; set; }
    public float? TopP { get; set; }
    public int? MaxTokens { get; set; }
    public int? MaxCompletionTokens { get; set; }
    public JsonElement? Stop { get; set; }
    public long? Seed { get; set; }
    public float? FrequencyPenalty { get; set; }
    public float? PresencePenalty { get; set; }
    public bool? Stream { get; set; }
    public StreamOptionsDto? StreamOptions { get; set; }
    public int? N { get; set; }
    public JsonElement? Tools { get; set; }
    public JsonElement? ToolChoice { get; set; }
    public JsonElement? Functions { get; set; }
    public JsonElement? FunctionCall { get; set; }
    public bool? Logprobs { get; set; }
    public int? TopLogprobs { get; set; }
    public JsonElement? ResponseFormat { get; set; }
    public string? User { get; set; }
    // Extensions that llama.cpp's and vLLM's servers also accept.
    public int? TopK { get; set; }
    public float? MinP { get; set; }
    public float? RepetitionPenalty { get; set; }
}

internal sealed class ChatMessageDto
{
    public string? Role { get; set; }
    public JsonElement? Content { get; set; }
    public string? Name { get; set; }
    public JsonElement? ToolCalls { get; set; }
}

internal sealed class StreamOptionsDto
{
    public bool? IncludeUsage { get; set; }
}

/// <summary>POST /v1/completions (the legacy text completion).</summary>
internal sealed class CompletionRequest
{
    public JsonElement? Prompt { get; set; }
    public string? Model { get; set; }
    public float? Temperature { get; set; }
    public float? TopP { get; set; }
    public int? MaxTokens { get; set; }
    public JsonElement? Stop { get; set; }
    public long? Seed { get; set; }
    public float? FrequencyPenalty { get; set; }
    public float? PresencePenalty { get; set; }
    public bool? Stream { get; set; }
    public StreamOptionsDto? StreamOptions { get; set; }
    public int? N { get; set; }
    public int? BestOf { get; set; }
    public int? Logprobs { get; set; }
    public bool? Echo { get; set; }
    public string? Suffix { get; set; }
    public string? User { get; set; }
    public int? TopK { get; set; }
    public float? MinP { get; set; }
    public float? RepetitionPenalty { get; set; }
}

/// <summary>POST /v1/embeddings.</summary>
internal sealed class EmbeddingRequest
{
    public JsonElement? Input { get; set; }
    public string? Model { get; set; }
    public string? EncodingFormat { get; set; }
    public int? Dimensions { get; set; }
    public string? User { get; set; }
}

internal sealed class Usage
{
    public int PromptTokens { get; set; }
    public int CompletionTokens { get; set; }
    public int TotalTokens { get; set; }
}

internal sealed class ChatCompletionResponse
{
    public required string Id { get; set; }
    public string Object { get; set; } = "chat.completion";
    public long Created { get; set; }
    public required string Model { get; set; }
    public required List<ChatChoice> Choices { get; set; }
    public Usage? Usage { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? SystemFingerprint { get; set; }
}

internal sealed class ChatChoice
{
    public int Index { get; set; }
    public required ChatResponseMessage Message { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public JsonElement? Logprobs { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? FinishReason { get; set; }
}

internal sealed class ChatResponseMessage
{
    public string Role { get; set; } = "assistant";
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Content { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Refusal { get; set; }
}

internal sealed class ChatCompletionChunk
{
    public required string Id { get; set; }
    public string Object { get; set; } = "chat.completion.chunk";
    public long Created { get; set; }
    public required string Model { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? SystemFingerprint { get; set; }
    public required List<ChatChunkChoice> Choices { get; set; }
    public Usage? Usage { get; set; }
}

internal sealed class ChatChunkChoice
{
    public int Index { get; set; }
    public required ChatDelta Delta { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public JsonElement? Logprobs { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? FinishReason { get; set; }
}

internal sealed class ChatDelta
{
    public string? Role { get; set; }
    public string? Content { get; set; }
}

/// <summary>A text completion and, with "stream", each of its chunks (the same object).</summary>
internal sealed class TextCompletionResponse
{
    public required string Id { get; set; }
    public string Object { get; set; } = "text_completion";
    public long Created { get; set; }
    public required string Model { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? SystemFingerprint { get; set; }
    public required List<TextChoice> Choices { get; set; }
    public Usage? Usage { get; set; }
}

internal sealed class TextChoice
{
    public required string Text { get; set; }
    public int Index { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public JsonElement? Logprobs { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? FinishReason { get; set; }
}

internal sealed class EmbeddingUsage
{
    public int PromptTokens { get; set; }
    public int TotalTokens { get; set; }
}

internal sealed class FloatEmbeddingList
{
    public string Object { get; set; } = "list";
    public required List<FloatEmbedding> Data { get; set; }
    public required string Model { get; set; }
    public required EmbeddingUsage Usage { get; set; }
}

internal sealed class FloatEmbedding
{
    public string Object { get; set; } = "embedding";
    public int Index { get; set; }
    public required float[] Embedding { get; set; }
}

internal sealed class Base64EmbeddingList
{
    public string Object { get; set; } = "list";
    public required List<Base64Embedding> Data { get; set; }
    public required string Model { get; set; }
    public required EmbeddingUsage Usage { get; set; }
}

internal sealed class Base64Embedding
{
    public string Object { get; set; } = "embedding";
    public int Index { get; set; }
    public required string Embedding { get; set; }
}

internal sealed class ModelList
{
    public string Object { get; set; } = "list";
    public required List<ModelInfo> Data { get; set; }
}

internal sealed class ModelInfo
{
    public required string Id { get; set; }
    public string Object { get; set; } = "model";
    public long Created { get; set; }
    public string OwnedBy { get; set; } = "llama-compiled";
}

internal sealed class ErrorResponse
{
    public required ErrorBody Error { get; set; }
}

internal sealed class ErrorBody
{
    public required string Message { get; set; }
    public required string Type { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Param { get; set; }
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Code { get; set; }
}

internal sealed class HealthResponse
{
    public required string Status { get; set; }
}

/// <summary>Every type the server reads or writes as JSON: source-generated, no reflection.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    NumberHandling = JsonNumberHandling.Strict,
    ReadCommentHandling = JsonCommentHandling.Disallow,
    AllowTrailingCommas = false)]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(CompletionRequest))]
[JsonSerializable(typeof(EmbeddingRequest))]
[JsonSerializable(typeof(ChatCompletionResponse))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(TextCompletionResponse))]
[JsonSerializable(typeof(FloatEmbeddingList))]
[JsonSerializable(typeof(Base64EmbeddingList))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ModelInfo))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(HealthResponse))]
internal sealed partial class ServerJsonContext : JsonSerializerContext
{
    /// <summary>
    /// The context the server uses: the attribute's options, and text as OpenAI writes it (quotes, apostrophes and
    /// non-ASCII characters unescaped; JSON needs only quotes, backslashes and control characters escaped).
    /// </summary>
    public static ServerJsonContext Wire { get; } = new(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.Strict,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
