using System;
using System.Collections.Generic;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>
/// <see cref="IChatClient"/> over a compiled model: renders the conversation with a
/// <see cref="ChatTemplate"/>, generates the answer in one session and streams it. Create it with
/// <see cref="LlamaChatClientExtensions.AsChatClient(ILlamaModel, Tokenizer, ChatTemplate, GenerationOptions?)"/>.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="ChatOptions"/> map to generation: <see cref="ChatOptions.Temperature"/>,
/// <see cref="ChatOptions.TopP"/>, <see cref="ChatOptions.TopK"/>, <see cref="ChatOptions.Seed"/>,
/// <see cref="ChatOptions.FrequencyPenalty"/>, <see cref="ChatOptions.PresencePenalty"/> to
/// <see cref="SamplingOptions"/>; <see cref="ChatOptions.MaxOutputTokens"/> to
/// <see cref="GenerationOptions.MaxNewTokens"/>; <see cref="ChatOptions.StopSequences"/> are added to
/// the template's; <see cref="ChatOptions.Instructions"/> become (or extend) the system message; the
/// <see cref="ChatOptions.AdditionalProperties"/> <c>min_p</c>, <c>repetition_penalty</c> and
/// <c>repetition_window</c> set <see cref="SamplingOptions.MinP"/>, <see cref="SamplingOptions.RepetitionPenalty"/>
/// and <see cref="SamplingOptions.RepetitionWindow"/>. Options left null keep the client's defaults.
/// Tools and response formats are not supported and are ignored.
/// </para>
/// <para>
/// The client keeps one session and the token ids in its KV cache. When the next request's prompt
/// starts with them (the usual case: the same conversation with the answer and a new user message
/// appended), only the new tokens are evaluated; otherwise the session is reset. Requests are served
/// one at a time; concurrent calls wait for each other. Created over a <see cref="BatchedGenerator"/>
/// instead, the client runs every request on it: concurrent requests share forward passes, and each
/// evaluates its whole prompt. Cancellation is honoured between tokens and ends the call with
/// <see cref="OperationCanceledException"/>.
/// </para>
/// </remarks>
public sealed class LlamaChatClient : IChatClient
{
    /// <summary>The provider name in <see cref="Metadata"/>.</summary>
    public const string ProviderName = "Llama.Compiled";

    private readonly ILlamaSession? _session;          // the client's own, unless it runs on a BatchedGenerator
    private readonly TextGenerator? _generator;        // over _session
    private readonly BatchedGenerator? _batched;
    private readonly ChatPromptEncoder _encoder;
    private readonly int[] _templateStopIds;
    private readonly SemaphoreSlim _gate = new(1, 1);  // one request at a time in _session
    private GenerationStats? _lastStats;
    private bool _disposed;

    /// <summary>Creates a client that runs <paramref name="model"/> in a session of its own.</summary>
    /// <param name="model">The model; not disposed by the client.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="template">How conversations are rendered.</param>
    /// <param name="defaultOptions">Generation options for what a request's <see cref="ChatOptions"/> leave unset (default: <see cref="GenerationOptions"/>' defaults).</param>
    /// <param name="modelId">The model id reported in responses and <see cref="Metadata"/> (default: the model class's name).</param>
    public LlamaChatClient(ILlamaModel model, Tokenizer tokenizer, ChatTemplate template, GenerationOptions? defaultOptions = null, string? modelId = null)
        : this(model, tokenizer, template, defaultOptions, modelId, batched: null)
    {
    }

    /// <summary>
    /// Creates a client whose requests run on <paramref name="generator"/>: concurrent requests share its forward passes
    /// (continuous batching) instead of waiting for each other. Each request evaluates its whole prompt (no session is kept
    /// between requests); the answers are those of a client with a session of its own.
    /// </summary>
    /// <param name="generator">The generator; not disposed by the client.</param>
    /// <param name="template">How conversations are rendered.</param>
    /// <param name="defaultOptions">Generation options for what a request's <see cref="ChatOptions"/> leave unset.</param>
    /// <param name="modelId">The model id reported in responses and <see cref="Metadata"/> (default: the model class's name).</param>
    public LlamaChatClient(BatchedGenerator generator, ChatTemplate template, GenerationOptions? defaultOptions = null, string? modelId = null)
        : this((generator ?? throw new ArgumentNullException(nameof(generator))).Model, generator.Tokenizer, template, defaultOptions, modelId, generator)
    {
    }

    private LlamaChatClient(ILlamaModel model, Tokenizer tokenizer, ChatTemplate template, GenerationOptions? defaultOptions, string? modelId, BatchedGenerator? batched)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        Model = model;
        Tokenizer = tokenizer;
        Template = template;
        DefaultOptions = defaultOptions ?? new GenerationOptions();
        ModelId = modelId ?? model.GetType().Name;
        Metadata = new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: ModelId);
        _encoder = new ChatPromptEncoder(tokenizer, template.SpecialTokens);
        var stopIds = new List<int>();
        foreach (string stop in template.StopSequences)
        {
            if (ChatPromptEncoder.TryGetSpecialId(tokenizer, stop, out int id) && !stopIds.Contains(id))
                stopIds.Add(id);
        }
        _templateStopIds = [.. stopIds];
        _batched = batched;
        if (batched is null)
        {
            _session = model.CreateSession();
            _generator = new TextGenerator(_session, tokenizer) { ReuseSessionPrefix = true };
        }
    }

    /// <summary>The model the client runs.</summary>
    public ILlamaModel Model { get; }

    /// <summary>The model's tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>How conversations are rendered into prompts.</summary>
    public ChatTemplate Template { get; }

    /// <summary>Generation options used for what a request's <see cref="ChatOptions"/> leave unset.</summary>
    public GenerationOptions DefaultOptions { get; }

    /// <summary>The model id reported in responses.</summary>
    public string ModelId { get; }

    /// <summary>Provider name, model id.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <summary>Counts and timings of the latest request (prompt tokens reused from the session included); <see langword="null"/> before the first.</summary>
    public GenerationStats? LastStats => Volatile.Read(ref _lastStats);

    /// <summary>
    /// The token ids the client evaluates for <paramref name="messages"/>: the rendered prompt with the
    /// generation prompt, BOS as the template wants it. Its length is what the conversation takes of
    /// the context (<see cref="LlamaModelShape.MaxContext"/>) before the answer.
    /// </summary>
    public int[] EncodePrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        List<ChatMessage> list = WithInstructions(messages, options?.Instructions);
        string text = Template.Render(list, addGenerationPrompt: true);
        var ids = new List<int>(text.Length / 3 + 2);
        if (Template.PrependBos && !Template.BosInText)
            ids.Add(Model.Shape.BosTokenId);
        _encoder.Encode(text, ids);
        return [.. ids];
    }

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(_disposed, this);
        (int[] prompt, GenerationOptions generation) = Prepare(messages, options);
        DateTimeOffset created = DateTimeOffset.UtcNow;
        var text = new StringBuilder();
        var stats = new StrongBox<GenerationStats?>();
        await foreach (string chunk in GenerateAsync(prompt, generation, stats, cancellationToken).ConfigureAwait(false))
            text.Append(chunk);
        var message = new ChatMessage(ChatRole.Assistant, TrimStart(text.ToString())) { MessageId = NewId(), CreatedAt = created };
        return new ChatResponse(message)
        {
            ResponseId = NewId(),
            ModelId = ModelId,
            CreatedAt = created,
            FinishReason = FinishReason(stats.Value!),
            Usage = Usage(stats.Value!),
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(_disposed, this);
        (int[] prompt, GenerationOptions generation) = Prepare(messages, options);
        string responseId = NewId(), messageId = NewId();
        DateTimeOffset created = DateTimeOffset.UtcNow;
        bool started = false;
        var stats = new StrongBox<GenerationStats?>();
        await foreach (string chunk in GenerateAsync(prompt, generation, stats, cancellationToken).ConfigureAwait(false))
        {
            // The answer starts at its first non-blank character (the templates strip contents).
            string text = started ? chunk : TrimStart(chunk);
            if (text.Length == 0)
                continue;
            started = true;
            yield return new ChatResponseUpdate(ChatRole.Assistant, text)
            {
                ResponseId = responseId,
                MessageId = messageId,
                ModelId = ModelId,
                CreatedAt = created,
            };
        }
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(stats.Value!))])
        {
            ResponseId = responseId,
            MessageId = messageId,
            ModelId = ModelId,
            CreatedAt = created,
            FinishReason = FinishReason(stats.Value!),
        };
    }

    /// <summary>
    /// Streams the answer to <paramref name="prompt"/>: on the batched generator, or in the client's session one request at a
    /// time. <paramref name="stats"/> is set when the stream ends.
    /// </summary>
    private async IAsyncEnumerable<string> GenerateAsync(int[] prompt, GenerationOptions generation, StrongBox<GenerationStats?> stats,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (_batched is not null)
        {
            BatchedGeneration run = _batched.Start(prompt, generation, cancellationToken);
            try
            {
                await foreach (string chunk in run.ReadChunksAsync(cancellationToken).ConfigureAwait(false))
                    yield return chunk;
                stats.Value = (await run.Completion.ConfigureAwait(false)).Stats;
                Volatile.Write(ref _lastStats, stats.Value);
            }
            finally
            {
                // A caller that stops reading early frees the sequence at once.
                if (!run.Completion.IsCompleted)
                    run.Cancel();
            }
        }
        else
        {
            await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await foreach (string chunk in _generator!.GenerateAsync(prompt, generation, cancellationToken).ConfigureAwait(false))
                    yield return chunk;
                stats.Value = _generator.LastStats;
            }
            finally
            {
                // Also when the request was cancelled or abandoned: the stats say so.
                Volatile.Write(ref _lastStats, _generator!.LastStats);
                _gate.Release();
            }
        }
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
            return null;
        if (serviceType == typeof(ChatClientMetadata))
            return Metadata;
        if (serviceType.IsInstanceOfType(this))
            return this;
        if (serviceType.IsInstanceOfType(Model))
            return Model;
        if (serviceType.IsInstanceOfType(Tokenizer))
            return Tokenizer;
        if (serviceType.IsInstanceOfType(Template))
            return Template;
        return null;
    }

    /// <summary>Disposes the client's session (not the model, nor a batched generator).</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _session?.Dispose();
    }

    private (int[] Prompt, GenerationOptions Options) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        GenerationOptions generation = MapOptions(options);
        int[] prompt = EncodePrompt(messages, options);
        return (prompt, generation);
    }

    /// <summary>
    /// The generation options a request with <paramref name="options"/> runs with: <see cref="DefaultOptions"/>
    /// overridden by what <paramref name="options"/> set, plus the template's stop sequences and stop tokens.
    /// </summary>
    /// <exception cref="ArgumentException">An <see cref="ChatOptions.AdditionalProperties"/> value is not a number.</exception>
    public GenerationOptions MapOptions(ChatOptions? options)
    {
        GenerationOptions defaults = DefaultOptions;
        SamplingOptions sampling = defaults.Sampling;
        var stops = new List<string>(defaults.StopSequences);
        stops.AddRange(Template.StopSequences);
        var stopIds = new List<int>(defaults.StopTokenIds);
        stopIds.AddRange(_templateStopIds);
        int maxNewTokens = defaults.MaxNewTokens;
        if (options is not null)
        {
            sampling = sampling with
            {
                Temperature = options.Temperature ?? sampling.Temperature,
                TopP = options.TopP ?? sampling.TopP,
                TopK = options.TopK ?? sampling.TopK,
                Seed = options.Seed is long seed ? unchecked((ulong)seed) : sampling.Seed,
                FrequencyPenalty = options.FrequencyPenalty ?? sampling.FrequencyPenalty,
                PresencePenalty = options.PresencePenalty ?? sampling.PresencePenalty,
                MinP = GetSingle(options, "min_p") ?? sampling.MinP,
                RepetitionPenalty = GetSingle(options, "repetition_penalty") ?? sampling.RepetitionPenalty,
                RepetitionWindow = (int?)GetSingle(options, "repetition_window") ?? sampling.RepetitionWindow,
            };
            if (options.MaxOutputTokens is int max)
                maxNewTokens = max;
            if (options.StopSequences is { } extra)
                stops.AddRange(extra);
        }
        return defaults with { Sampling = sampling, MaxNewTokens = maxNewTokens, StopSequences = stops, StopTokenIds = stopIds };
    }

    /// <summary>A number from <see cref="ChatOptions.AdditionalProperties"/>: any numeric type, a numeric string or a JSON number.</summary>
    private static float? GetSingle(ChatOptions options, string key)
    {
        if (options.AdditionalProperties is not { } properties || !properties.TryGetValue(key, out object? value) || value is null)
            return null;
        float? result = value switch
        {
            float f => f,
            double d => (float)d,
            decimal m => (float)m,
            int i => i,
            long l => l,
            short s => s,
            uint u => u,
            ulong u => u,
            string text when float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float parsed) => parsed,
            JsonElement { ValueKind: JsonValueKind.Number } json => json.GetSingle(),
            JsonElement { ValueKind: JsonValueKind.String } json when float.TryParse(json.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out float parsed) => parsed,
            _ => null,
        };
        return result ?? throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a number, not '{value}'.", nameof(options));
    }

    /// <summary>The messages with <paramref name="instructions"/> as (or appended to) the system message.</summary>
    private static List<ChatMessage> WithInstructions(IEnumerable<ChatMessage> messages, string? instructions)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = new List<ChatMessage>(messages);
        if (string.IsNullOrEmpty(instructions))
            return list;
        if (list.Count > 0 && list[0] is { } first && first.Role == ChatRole.System)
            list[0] = new ChatMessage(ChatRole.System, first.Text + "\n" + instructions);
        else
            list.Insert(0, new ChatMessage(ChatRole.System, instructions));
        return list;
    }

    private static ChatFinishReason FinishReason(GenerationStats stats) => stats.StopReason switch
    {
        StopReason.MaxNewTokens or StopReason.ContextFull => ChatFinishReason.Length,
        _ => ChatFinishReason.Stop,
    };

    private static UsageDetails Usage(GenerationStats stats) => new()
    {
        InputTokenCount = stats.PromptTokens,
        OutputTokenCount = stats.GeneratedTokens,
        TotalTokenCount = stats.PromptTokens + stats.GeneratedTokens,
        CachedInputTokenCount = stats.ReusedPromptTokens,
    };

    private static string TrimStart(string text) => text.TrimStart();

    private static string NewId() => Guid.NewGuid().ToString("N");
}
