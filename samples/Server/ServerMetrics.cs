using System;
using System.Collections.Generic;
using System.Diagnostics.Metrics;

namespace Llama.Compiled.Server;

/// <summary>
/// The server's instruments, on the Meter "Llama.Compiled.Server" (read them with <c>dotnet-counters monitor
/// --counters Llama.Compiled.Server -n Server</c>, or scrape /metrics).
/// </summary>
public sealed class ServerMetrics : IDisposable
{
    public const string MeterName = "Llama.Compiled.Server";

    private readonly Meter _meter;
    private readonly Counter<long> _generatedTokens;
    private readonly Counter<long> _promptTokens;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Counter<long> _requests;

    public ServerMetrics(IMeterFactory meterFactory, LlamaBackend backend)
    {
        _meter = meterFactory.Create(MeterName);
        _meter.CreateObservableGauge("llama.server.queue.length", () => backend.QueueLength, "{request}",
            "Requests waiting for a sequence slot.");
        _meter.CreateObservableGauge("llama.server.sequences.active", () => backend.ActiveSequences, "{sequence}",
            "Sequences being generated.");
        _generatedTokens = _meter.CreateCounter<long>("llama.server.tokens.generated", "{token}",
            "Tokens generated (its rate is the server's tokens per second).");
        _promptTokens = _meter.CreateCounter<long>("llama.server.tokens.prompt", "{token}", "Prompt tokens evaluated.");
        _timeToFirstToken = _meter.CreateHistogram<double>("llama.server.time_to_first_token", "s",
            "From the request's arrival to its first generated text (queueing and prefill included).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        _requests = _meter.CreateCounter<long>("llama.server.requests", "{request}", "Requests answered, by endpoint and HTTP status.");
    }

    public void Generated(int promptTokens, int generatedTokens)
    {
        _promptTokens.Add(promptTokens);
        _generatedTokens.Add(generatedTokens);
    }

    public void FirstToken(TimeSpan elapsed) => _timeToFirstToken.Record(elapsed.TotalSeconds);

    public void Request(string endpoint, int status) =>
        _requests.Add(1, new KeyValuePair<string, object?>("endpoint", endpoint), new KeyValuePair<string, object?>("http.response.status_code", status));

    public void Dispose() => _meter.Dispose();
}
