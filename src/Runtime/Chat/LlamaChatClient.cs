using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
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
/// <see cref="ChatOptions.ResponseFormat"/> constrains the answer: <see cref="ChatResponseFormat.Json"/> to any JSON object
/// (<see cref="Grammar.AnyJson"/>), a JSON format with a schema (<see cref="ChatResponseFormat.ForJsonSchema(JsonElement, string?, string?)"/>,
/// as <c>GetResponseAsync&lt;T&gt;</c> sends it) to JSON that the schema accepts (<see cref="Grammar.FromJsonSchema(JsonElement)"/>,
/// compiled once per distinct schema and kept); generation stops when the value is complete. The schema is not added to
/// the prompt: say in the messages what is expected. A <see cref="GenerationOptions.Grammar"/> in the default options
/// applies when a request sets no response format.
/// </para>
/// <para>
/// Tools: the <see cref="AIFunctionDeclaration"/>s in <see cref="ChatOptions.Tools"/> (other tools are ignored) are rendered
/// into the prompt in the template's own format (<see cref="ChatTemplate.Render(IEnumerable{ChatMessage}, IReadOnlyList{AIFunctionDeclaration}?, bool)"/>;
/// Llama 3.1+ and Qwen templates), and the calls the model writes come back as <see cref="FunctionCallContent"/>
/// (streamed as updates of their own, never as text) with <see cref="ChatFinishReason.ToolCalls"/>; text before a call stays
/// text, and a call whose JSON is malformed is returned as the text it was. Calls and their results
/// (<see cref="FunctionResultContent"/> in <see cref="ChatRole.Tool"/> messages) in the conversation are rendered as the
/// model's template renders them, so <c>new ChatClientBuilder(client).UseFunctionInvocation().Build()</c> runs tools end
/// to end. <see cref="ChatOptions.ToolMode"/>: <see cref="ChatToolMode.Auto"/> (or null) lets the model choose;
/// <see cref="ChatToolMode.None"/> renders no tools and parses no calls; <see cref="ChatToolMode.RequireAny"/> and
/// <see cref="ChatToolMode.RequireSpecific"/> end the prompt with the opening of a call (<see cref="ToolCallFormat.CallPrefix"/>)
/// and constrain the answer to the JSON of a call to one of the tools (or to the required one) whose arguments match its
/// parameter schema (<see cref="ToolCallFormat.GetCallJsonSchema"/>; a grammar compiled once per distinct schema and kept).
/// In <see cref="ChatToolMode.Auto"/> the answer is free, but once a call starts (<see cref="ToolCallFormat.CallTriggers"/>)
/// its JSON is constrained the same way until it is complete (a lazy grammar, <see cref="GenerationOptions.GrammarTriggers"/>),
/// unless the request has a response format (or the default options a grammar), which then constrains the whole answer
/// instead. A function whose schema grammars do not support (<see cref="Grammar.FromJsonSchema(JsonElement)"/>) leaves the
/// calls unconstrained: a required call is then best effort (the opening also names the function), and what is no call
/// comes back as text. Tools given to a template without a tool format throw <see cref="NotSupportedException"/>.
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
    private readonly ConcurrentDictionary<string, Grammar> _schemaGrammars = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Grammar?> _callGrammars = new(StringComparer.Ordinal);
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
    /// generation prompt (and the tools of <paramref name="options"/>), BOS as the template wants it. Its length is what the
    /// conversation takes of the context (<see cref="LlamaModelShape.MaxContext"/>) before the answer.
    /// </summary>
    /// <exception cref="NotSupportedException">The options have tools and the template has no tool format.</exception>
    public int[] EncodePrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null) =>
        Encode(RenderPrompt(messages, options).Text);

    /// <summary>
    /// The prompt text of a request: the conversation (with <see cref="ChatOptions.Instructions"/>) and its tools, rendered,
    /// and when a call is required the start of one: up to where the call's JSON begins when the calls can be constrained
    /// (the CallGrammar returned, the grammar of a call to the tools, or to the required function), otherwise with the
    /// function's name too.
    /// </summary>
    private (string Text, IReadOnlyList<AIFunctionDeclaration>? Tools, string? Opening, Grammar? CallGrammar) RenderPrompt(
        IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        List<ChatMessage> list = WithInstructions(messages, options?.Instructions);
        IReadOnlyList<AIFunctionDeclaration>? tools = ToolsOf(options);
        string text = Template.Render(list, tools, addGenerationPrompt: true);
        if (tools is null)
            return (text, null, null, null);
        ToolCallFormat format = Template.ToolCallFormat!;
        if (options!.ToolMode is not RequiredChatToolMode required)
            return (text, tools, null, CallGrammar(format, tools, null));
        string? name = required.RequiredFunctionName;
        if (name is not null && !tools.Any(t => t.Name == name))
            throw new ArgumentException($"ChatOptions.ToolMode requires the function '{name}', which is not among ChatOptions.Tools.", nameof(options));
        Grammar? grammar = CallGrammar(format, tools, name);
        string opening = grammar is not null ? format.CallPrefix : format.GetOpening(name);
        return (text + opening, tools, opening, grammar);
    }

    /// <summary>
    /// The grammar of one call to <paramref name="tools"/> (or to <paramref name="function"/>), compiled once per distinct
    /// schema; null when a function's parameter schema has what grammars do not support (its calls are then not constrained).
    /// </summary>
    private Grammar? CallGrammar(ToolCallFormat format, IReadOnlyList<AIFunctionDeclaration> tools, string? function)
    {
        JsonElement schema = format.GetCallJsonSchema(tools, function);
        string key = schema.GetRawText();
        if (_callGrammars.TryGetValue(key, out Grammar? grammar))
            return grammar;
        try
        {
            grammar = Grammar.FromJsonSchema(schema);
        }
        catch (GrammarFormatException)
        {
            grammar = null;
        }
        if (_callGrammars.Count >= 64)
            _callGrammars.Clear();
        _callGrammars[key] = grammar;
        return grammar;
    }

    /// <summary>The functions of a request: none when it has none or its <see cref="ChatOptions.ToolMode"/> is None.</summary>
    private static List<AIFunctionDeclaration>? ToolsOf(ChatOptions? options)
    {
        if (options?.Tools is not { Count: > 0 } all || options.ToolMode is NoneChatToolMode)
            return null;
        List<AIFunctionDeclaration> functions = [.. all.OfType<AIFunctionDeclaration>()];
        return functions.Count > 0 ? functions : null;
    }

    private int[] Encode(string text)
    {
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
        Request request = Prepare(messages, options);
        DateTimeOffset created = DateTimeOffset.UtcNow;
        var text = new StringBuilder();
        var contents = new List<AIContent>();
        var stats = new StrongBox<GenerationStats?>();
        await foreach (string chunk in GenerateAsync(request.Prompt, request.Generation, stats, cancellationToken).ConfigureAwait(false))
        {
            if (request.Parser is null)
                text.Append(chunk);
            else
                request.Parser.Append(chunk, contents);
        }
        ChatMessage message;
        if (request.Parser is null)
        {
            message = new ChatMessage(ChatRole.Assistant, TrimStart(text.ToString()));
        }
        else
        {
            request.Parser.Complete(contents);
            message = new ChatMessage(ChatRole.Assistant, MergeText(contents));
        }
        message.MessageId = NewId();
        message.CreatedAt = created;
        return new ChatResponse(message)
        {
            ResponseId = NewId(),
            ModelId = ModelId,
            CreatedAt = created,
            FinishReason = request.Parser is { CallCount: > 0 } ? ChatFinishReason.ToolCalls : FinishReason(stats.Value!),
            Usage = Usage(stats.Value!),
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ObjectDisposedException.ThrowIf(_disposed, this);
        Request request = Prepare(messages, options);
        string responseId = NewId(), messageId = NewId();
        DateTimeOffset created = DateTimeOffset.UtcNow;
        bool started = false;
        var stats = new StrongBox<GenerationStats?>();
        var pending = new List<AIContent>();
        ChatResponseUpdate Update(IList<AIContent> contents) => new(ChatRole.Assistant, contents)
        {
            ResponseId = responseId,
            MessageId = messageId,
            ModelId = ModelId,
            CreatedAt = created,
        };
        await foreach (string chunk in GenerateAsync(request.Prompt, request.Generation, stats, cancellationToken).ConfigureAwait(false))
        {
            if (request.Parser is null)
                pending.Add(new TextContent(chunk));
            else
                request.Parser.Append(chunk, pending);
            foreach (AIContent content in pending)
            {
                if (Visible(content, ref started) is { } visible)
                    yield return Update([visible]);
            }
            pending.Clear();
        }
        if (request.Parser is not null)
        {
            request.Parser.Complete(pending);
            foreach (AIContent content in pending)
            {
                if (Visible(content, ref started) is { } visible)
                    yield return Update([visible]);
            }
        }
        ChatResponseUpdate last = Update([new UsageContent(Usage(stats.Value!))]);
        last.FinishReason = request.Parser is { CallCount: > 0 } ? ChatFinishReason.ToolCalls : FinishReason(stats.Value!);
        yield return last;
    }

    /// <summary>The parser's output as a message's contents: adjacent texts joined, the answer's leading blanks removed.</summary>
    private static List<AIContent> MergeText(List<AIContent> contents)
    {
        var merged = new List<AIContent>(contents.Count);
        var text = new StringBuilder();
        void Flush()
        {
            string value = merged.Count == 0 ? TrimStart(text.ToString()) : text.ToString();
            if (value.Length > 0)
                merged.Add(new TextContent(value));
            text.Clear();
        }
        foreach (AIContent content in contents)
        {
            if (content is TextContent textContent)
            {
                text.Append(textContent.Text);
                continue;
            }
            Flush();
            merged.Add(content);
        }
        Flush();
        return merged;
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

    /// <summary>A request: the prompt's ids, the options to generate with, and the parser of calls when tools were given.</summary>
    private sealed record Request(int[] Prompt, GenerationOptions Generation, ToolCallParser? Parser);

    private Request Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        GenerationOptions generation = MapOptions(options);
        (string text, IReadOnlyList<AIFunctionDeclaration>? tools, string? opening, Grammar? callGrammar) = RenderPrompt(messages, options);
        ToolCallParser? parser = null;
        if (tools is not null)
        {
            ToolCallFormat format = Template.ToolCallFormat!;
            parser = format.CreateParser();
            if (opening is not null)
            {
                // The prompt already holds the start of the call: the parser reads on from there, and the answer is the
                // call's JSON (whatever else would constrain the answer).
                parser.Append(opening, new List<AIContent>());
                if (callGrammar is not null)
                    generation = generation with { Grammar = callGrammar, GrammarTriggers = [] };
            }
            else if (callGrammar is not null && generation.Grammar is null)
            {
                // The model may answer in text or call: a call's JSON is constrained from where it starts.
                generation = generation with { Grammar = callGrammar, GrammarTriggers = format.CallTriggers };
            }
        }
        return new Request(Encode(text), generation, parser);
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
        Grammar? grammar = defaults.Grammar;
        IReadOnlyList<GrammarTrigger> triggers = defaults.GrammarTriggers;
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
            if (options.ResponseFormat is ChatResponseFormatJson json)
            {
                grammar = json.Schema is JsonElement schema ? SchemaGrammar(schema) : Grammar.AnyJson;
                triggers = [];
            }
        }
        return defaults with
        {
            Sampling = sampling, MaxNewTokens = maxNewTokens, StopSequences = stops, StopTokenIds = stopIds, Grammar = grammar, GrammarTriggers = triggers,
        };
    }

    /// <summary>
    /// The grammar of a response format's schema, compiled once per distinct schema text: a grammar keeps what it learns
    /// while generating (its states and masks), so the next request with the same schema starts fast.
    /// </summary>
    private Grammar SchemaGrammar(JsonElement schema)
    {
        string key = schema.GetRawText();
        if (_schemaGrammars.TryGetValue(key, out Grammar? grammar))
            return grammar;
        grammar = Grammar.FromJsonSchema(schema);
        if (_schemaGrammars.Count >= 64)
            _schemaGrammars.Clear();
        _schemaGrammars[key] = grammar;
        return grammar;
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

    /// <summary>
    /// What a streamed content becomes in an update: text from the answer's first non-blank character on (the templates strip
    /// contents; null while there is none yet), a call as it is (one update of its own, never streamed as text).
    /// </summary>
    private static AIContent? Visible(AIContent content, ref bool started)
    {
        if (content is not TextContent { Text: var chunk })
            return content;
        string text = started ? chunk : TrimStart(chunk);
        if (text.Length == 0)
            return null;
        started = true;
        return new TextContent(text);
    }

    private static string NewId() => Guid.NewGuid().ToString("N");
}
