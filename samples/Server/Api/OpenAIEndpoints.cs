using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Llama.Compiled.Server.Api;

/// <summary>The OpenAI-compatible endpoints over a <see cref="LlamaBackend"/>.</summary>
internal sealed partial class OpenAIEndpoints(LlamaBackend backend, IHostApplicationLifetime lifetime, ILogger<OpenAIEndpoints> logger)
{
    /// <summary>The most inputs one embeddings request may have (OpenAI's limit).</summary>
    public const int MaxEmbeddingInputs = 2048;

    /// <summary>How the two completion endpoints differ: the chunks they send.</summary>
    private interface IResponseFormat
    {
        bool TrimStart { get; }
        Task WriteStartAsync(ServerSentEvents events);
        Task WriteDeltaAsync(ServerSentEvents events, string text);
        Task WriteFinishAsync(ServerSentEvents events, string finishReason);
        Task WriteUsageAsync(ServerSentEvents events, Usage usage);
        Task WriteResponseAsync(HttpContext context, string text, string finishReason, Usage usage);
    }

    // ---------------------------------------------------------------- /v1/chat/completions

    public async Task ChatCompletionsAsync(HttpContext context)
    {
        ChatCompletionRequest request = await Http.ReadJsonAsync(context, ServerJsonContext.Wire.ChatCompletionRequest);
        RequestValidation.CheckN(request.N);
        if (request.Tools is { ValueKind: System.Text.Json.JsonValueKind.Array } tools && tools.GetArrayLength() > 0)
            throw ApiException.NotSupported("tools");
        if (request.Functions is { ValueKind: System.Text.Json.JsonValueKind.Array } functions && functions.GetArrayLength() > 0)
            throw ApiException.NotSupported("functions");
        if (request.ToolChoice is { ValueKind: not System.Text.Json.JsonValueKind.Null } toolChoice && !(toolChoice.ValueKind == System.Text.Json.JsonValueKind.String && toolChoice.GetString() == "none"))
            throw ApiException.NotSupported("tool_choice");
        if (request.Logprobs is true)
            throw ApiException.NotSupported("logprobs");
        if (request.TopLogprobs is int and > 0)
            throw ApiException.NotSupported("top_logprobs");
        ChatResponseFormat? responseFormat = RequestValidation.ResponseFormat(request.ResponseFormat);
        var sampling = new RequestValidation.Sampling(request.Temperature, request.TopP, request.Seed, request.FrequencyPenalty, request.PresencePenalty,
            request.TopK, request.MinP, request.RepetitionPenalty);
        RequestValidation.CheckSampling(sampling);
        int? maxTokens = RequestValidation.CheckMaxTokens(request.MaxCompletionTokens, "max_completion_tokens")
            ?? RequestValidation.CheckMaxTokens(request.MaxTokens, "max_tokens");
        List<string> stop = RequestValidation.Stop(request.Stop);
        List<ChatMessage> messages = RequestValidation.Messages(request.Messages);

        // The in-process chat client's own rendering and option mapping: the server's answer is its answer.
        var chatOptions = new ChatOptions
        {
            Temperature = request.Temperature,
            TopP = request.TopP,
            TopK = request.TopK,
            Seed = request.Seed,
            FrequencyPenalty = request.FrequencyPenalty,
            PresencePenalty = request.PresencePenalty,
            MaxOutputTokens = maxTokens,
            StopSequences = stop.Count > 0 ? stop : null,
            ResponseFormat = responseFormat,
        };
        if (request.MinP is float minP)
            (chatOptions.AdditionalProperties ??= [])["min_p"] = minP;
        if (request.RepetitionPenalty is float repetitionPenalty)
            (chatOptions.AdditionalProperties ??= [])["repetition_penalty"] = repetitionPenalty;
        int[] prompt = backend.Chat.EncodePrompt(messages, chatOptions);
        CheckContext(prompt.Length, "messages");
        GenerationOptions options;
        try
        {
            // A JSON response format becomes a grammar here (compiled once per distinct schema and kept by the client).
            options = backend.Chat.MapOptions(chatOptions);
        }
        catch (GrammarFormatException e)
        {
            throw ApiException.BadRequest($"Invalid 'response_format': {e.Message}", "response_format", "invalid_value");
        }

        var format = new ChatFormat(NewId("chatcmpl-"), backend.ModelId, UnixNow());
        bool includeUsage = request.StreamOptions?.IncludeUsage is true;
        await GenerateAsync(context, "chat", prompt, options, request.Stream is true, includeUsage, format);
    }

    private sealed class ChatFormat(string id, string model, long created) : IResponseFormat
    {
        public bool TrimStart => true; // as LlamaChatClient: the answer starts at its first non-blank character

        private ChatCompletionChunk Chunk(ChatDelta delta, string? finishReason) => new()
        {
            Id = id,
            Created = created,
            Model = model,
            Choices = [new ChatChunkChoice { Index = 0, Delta = delta, FinishReason = finishReason }],
        };

        public Task WriteStartAsync(ServerSentEvents events) =>
            events.WriteAsync(Chunk(new ChatDelta { Role = "assistant", Content = "" }, null), ServerJsonContext.Wire.ChatCompletionChunk);

        public Task WriteDeltaAsync(ServerSentEvents events, string text) =>
            events.WriteAsync(Chunk(new ChatDelta { Content = text }, null), ServerJsonContext.Wire.ChatCompletionChunk);

        public Task WriteFinishAsync(ServerSentEvents events, string finishReason) =>
            events.WriteAsync(Chunk(new ChatDelta(), finishReason), ServerJsonContext.Wire.ChatCompletionChunk);

        public Task WriteUsageAsync(ServerSentEvents events, Usage usage) =>
            events.WriteAsync(new ChatCompletionChunk { Id = id, Created = created, Model = model, Choices = [], Usage = usage }, ServerJsonContext.Wire.ChatCompletionChunk);

        public Task WriteResponseAsync(HttpContext context, string text, string finishReason, Usage usage) =>
            Http.WriteJsonAsync(context, new ChatCompletionResponse
            {
                Id = id,
                Created = created,
                Model = model,
                Choices = [new ChatChoice { Index = 0, Message = new ChatResponseMessage { Content = text }, FinishReason = finishReason }],
                Usage = usage,
            }, ServerJsonContext.Wire.ChatCompletionResponse);
    }

    // ---------------------------------------------------------------- /v1/completions

    public async Task CompletionsAsync(HttpContext context)
    {
        CompletionRequest request = await Http.ReadJsonAsync(context, ServerJsonContext.Wire.CompletionRequest);
        RequestValidation.CheckN(request.N);
        if (request.BestOf is int bestOf && bestOf != 1)
            throw ApiException.NotSupported("best_of");
        if (request.Logprobs is int and > 0)
            throw ApiException.NotSupported("logprobs");
        if (request.Echo is true)
            throw ApiException.NotSupported("echo");
        if (!string.IsNullOrEmpty(request.Suffix))
            throw ApiException.NotSupported("suffix");
        var sampling = new RequestValidation.Sampling(request.Temperature, request.TopP, request.Seed, request.FrequencyPenalty, request.PresencePenalty,
            request.TopK, request.MinP, request.RepetitionPenalty);
        RequestValidation.CheckSampling(sampling);
        // OpenAI's default for the legacy endpoint is 16 tokens.
        int maxTokens = RequestValidation.CheckMaxTokens(request.MaxTokens, "max_tokens") ?? 16;
        List<string> stop = RequestValidation.Stop(request.Stop);
        (string? text, int[]? ids) = RequestValidation.Prompt(request.Prompt);
        int[] prompt;
        if (text is not null)
        {
            prompt = backend.Generator.EncodePrompt(text);
        }
        else
        {
            prompt = ids!;
            for (int i = 0; i < prompt.Length; i++)
            {
                if ((uint)prompt[i] >= (uint)backend.Model.Shape.VocabSize)
                    throw ApiException.BadRequest($"Invalid 'prompt[{i}]': token id {prompt[i]} is outside the vocabulary of {backend.Model.Shape.VocabSize}.", $"prompt[{i}]", "invalid_value");
            }
        }
        CheckContext(prompt.Length, "prompt");
        var options = new GenerationOptions
        {
            MaxNewTokens = maxTokens,
            Sampling = RequestValidation.ToSamplingOptions(sampling),
            StopSequences = stop,
        };
        var format = new TextFormat(NewId("cmpl-"), backend.ModelId, UnixNow());
        await GenerateAsync(context, "completions", prompt, options, request.Stream is true, request.StreamOptions?.IncludeUsage is true, format);
    }

    private sealed class TextFormat(string id, string model, long created) : IResponseFormat
    {
        public bool TrimStart => false;

        private TextCompletionResponse Chunk(string text, string? finishReason, Usage? usage = null) => new()
        {
            Id = id,
            Created = created,
            Model = model,
            Choices = [new TextChoice { Text = text, Index = 0, FinishReason = finishReason }],
            Usage = usage,
        };

        public Task WriteStartAsync(ServerSentEvents events) => Task.CompletedTask;

        public Task WriteDeltaAsync(ServerSentEvents events, string text) =>
            events.WriteAsync(Chunk(text, null), ServerJsonContext.Wire.TextCompletionResponse);

        public Task WriteFinishAsync(ServerSentEvents events, string finishReason) =>
            events.WriteAsync(Chunk("", finishReason), ServerJsonContext.Wire.TextCompletionResponse);

        public Task WriteUsageAsync(ServerSentEvents events, Usage usage) =>
            events.WriteAsync(new TextCompletionResponse { Id = id, Created = created, Model = model, Choices = [], Usage = usage }, ServerJsonContext.Wire.TextCompletionResponse);

        public Task WriteResponseAsync(HttpContext context, string text, string finishReason, Usage usage) =>
            Http.WriteJsonAsync(context, Chunk(text, finishReason, usage), ServerJsonContext.Wire.TextCompletionResponse);
    }

    // ---------------------------------------------------------------- generation, shared

    private void CheckContext(int promptTokens, string param)
    {
        // At least one token must be generated after the prompt.
        if (promptTokens >= backend.MaxContext)
        {
            throw ApiException.BadRequest(
                $"This model's maximum context length is {backend.MaxContext} tokens. However, your prompt is {promptTokens} tokens. Please reduce the length of the {param}.",
                param, "context_length_exceeded");
        }
    }

    private BatchedGeneration Start(int[] prompt, GenerationOptions options, CancellationToken cancellationToken)
    {
        try
        {
            return backend.Generator.Start(prompt, options, cancellationToken);
        }
        catch (GenerationQueueFullException)
        {
            throw new ApiException(StatusCodes.Status429TooManyRequests,
                $"The server is busy ({backend.Generator.Options.MaxQueue} requests are waiting). Retry after a moment.", code: "queue_full");
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
        {
            throw new ApiException(StatusCodes.Status503ServiceUnavailable, "The server is shutting down.", code: "shutting_down");
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(e.Message, e.ParamName, "invalid_value");
        }
    }

    private async Task GenerateAsync(HttpContext context, string endpoint, int[] prompt, GenerationOptions options, bool stream, bool includeUsage, IResponseFormat format)
    {
        CancellationToken aborted = context.RequestAborted;
        BatchedGeneration generation = Start(prompt, options, aborted);
        using ServerSentEvents? events = stream ? new ServerSentEvents(context) : null;
        var text = stream ? null : new StringBuilder();
        bool started = !format.TrimStart;
        try
        {
            if (events is not null)
            {
                await events.StartAsync();
                await format.WriteStartAsync(events);
            }
            await foreach (string chunk in generation.ReadChunksAsync(aborted))
            {
                string piece = started ? chunk : chunk.TrimStart();
                if (piece.Length == 0)
                    continue;
                started = true;
                if (events is not null)
                    await format.WriteDeltaAsync(events, piece);
                else
                    text!.Append(piece);
            }
            GenerationResult result = await generation.Completion;
            string finishReason = result.FinishReason is StopReason.MaxNewTokens or StopReason.ContextFull ? "length" : "stop";
            var usage = new Usage
            {
                PromptTokens = result.PromptTokens,
                CompletionTokens = result.GeneratedTokens,
                TotalTokens = result.PromptTokens + result.GeneratedTokens,
            };
            if (events is null)
            {
                await format.WriteResponseAsync(context, text!.ToString(), finishReason, usage);
                return;
            }
            await format.WriteFinishAsync(events, finishReason);
            if (includeUsage)
                await format.WriteUsageAsync(events, usage);
            await events.WriteDoneAsync();
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client went away: its generation is cancelled (the token was the request's) and its slot free.
            LogClientGone(logger, endpoint);
        }
        catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
        {
            // The server stopped the generation (shutdown grace period over).
            var error = new ApiException(StatusCodes.Status503ServiceUnavailable, "The server is shutting down; the generation was cancelled.", code: "shutting_down");
            if (!context.Response.HasStarted)
                throw error;
            if (events is not null)
                await events.WriteAsync(new ErrorResponse { Error = new ErrorBody { Message = error.Message, Type = error.Type, Code = error.Code } }, ServerJsonContext.Wire.ErrorResponse);
        }
        catch (Exception e) when (events is not null && context.Response.HasStarted && e is not OperationCanceledException)
        {
            // The stream has begun: the error goes in it, as OpenAI sends errors mid-stream, and the stream ends.
            LogStreamFailed(logger, e, endpoint);
            await events.WriteAsync(new ErrorResponse { Error = new ErrorBody { Message = "The server had an error while generating.", Type = "server_error" } }, ServerJsonContext.Wire.ErrorResponse);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "{Endpoint}: the generation failed mid-stream")]
    private static partial void LogStreamFailed(ILogger logger, Exception exception, string endpoint);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Endpoint}: the client disconnected; generation cancelled")]
    private static partial void LogClientGone(ILogger logger, string endpoint);

    // ---------------------------------------------------------------- /v1/embeddings

    public async Task EmbeddingsAsync(HttpContext context)
    {
        EmbeddingRequest request = await Http.ReadJsonAsync(context, ServerJsonContext.Wire.EmbeddingRequest);
        List<string> inputs = RequestValidation.Input(request.Input);
        if (inputs.Count > MaxEmbeddingInputs)
            throw ApiException.BadRequest($"Invalid 'input': at most {MaxEmbeddingInputs} inputs per request.", "input", "invalid_value");
        bool base64 = request.EncodingFormat switch
        {
            null or "float" => false,
            "base64" => true,
            _ => throw ApiException.BadRequest($"Invalid value for 'encoding_format': '{request.EncodingFormat}'. Supported values are: 'float' and 'base64'.", "encoding_format", "invalid_value"),
        };
        GeneratedEmbeddings<Embedding<float>> embeddings;
        try
        {
            embeddings = await backend.Embeddings.GenerateAsync(inputs, cancellationToken: context.RequestAborted);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadRequest(e.Message, "input", "context_length_exceeded");
        }
        int dimensions = embeddings.Count > 0 ? embeddings[0].Vector.Length : 0;
        if (request.Dimensions is int requested && requested != dimensions)
            throw ApiException.BadRequest($"Invalid 'dimensions': {requested}. This model's embeddings have {dimensions} dimensions.", "dimensions", "unsupported_value");
        int tokens = (int)(embeddings.Usage?.InputTokenCount ?? 0);
        var usage = new EmbeddingUsage { PromptTokens = tokens, TotalTokens = tokens };
        if (base64)
        {
            var data = new List<Base64Embedding>(embeddings.Count);
            for (int i = 0; i < embeddings.Count; i++)
            {
                ReadOnlySpan<byte> bytes = MemoryMarshal.AsBytes(embeddings[i].Vector.Span); // little-endian float32, as OpenAI's
                data.Add(new Base64Embedding { Index = i, Embedding = Convert.ToBase64String(bytes) });
            }
            await Http.WriteJsonAsync(context, new Base64EmbeddingList { Data = data, Model = backend.ModelId, Usage = usage }, ServerJsonContext.Wire.Base64EmbeddingList);
        }
        else
        {
            var data = new List<FloatEmbedding>(embeddings.Count);
            for (int i = 0; i < embeddings.Count; i++)
                data.Add(new FloatEmbedding { Index = i, Embedding = embeddings[i].Vector.ToArray() });
            await Http.WriteJsonAsync(context, new FloatEmbeddingList { Data = data, Model = backend.ModelId, Usage = usage }, ServerJsonContext.Wire.FloatEmbeddingList);
        }
    }

    // ---------------------------------------------------------------- /v1/models, /health

    public Task ModelsAsync(HttpContext context) =>
        Http.WriteJsonAsync(context, new ModelList { Data = [ModelInfo()] }, ServerJsonContext.Wire.ModelList);

    public Task ModelAsync(HttpContext context)
    {
        string? id = context.Request.RouteValues["id"] as string;
        if (id != backend.ModelId)
            throw new ApiException(StatusCodes.Status404NotFound, $"The model '{id}' does not exist.", "model", "model_not_found");
        return Http.WriteJsonAsync(context, ModelInfo(), ServerJsonContext.Wire.ModelInfo);
    }

    private ModelInfo ModelInfo() => new() { Id = backend.ModelId, Created = backend.Created.ToUnixTimeSeconds() };

    public Task HealthAsync(HttpContext context)
    {
        bool ready = lifetime.ApplicationStarted.IsCancellationRequested && !lifetime.ApplicationStopping.IsCancellationRequested;
        return Http.WriteJsonAsync(context, new HealthResponse { Status = ready ? "ok" : "unavailable" }, ServerJsonContext.Wire.HealthResponse,
            ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
    }

    private static string NewId(string prefix) => prefix + Guid.NewGuid().ToString("N");

    private static long UnixNow() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();
}
